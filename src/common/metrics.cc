#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <variant>

namespace pd::metrics {

// ---------------------------------------------------------------------------- Histogram

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // First bound >= v: Prometheus buckets are "less than or equal". NaN compares false with
  // every bound and goes to +Inf (as in the official clients).
  const size_t i = std::isnan(v) ? bounds_.size()
                                 : static_cast<size_t>(std::lower_bound(bounds_.begin(),
                                                                        bounds_.end(), v) -
                                                       bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

uint64_t Histogram::Count() const {
  uint64_t n = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) n += counts_[i].load(std::memory_order_relaxed);
  return n;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

// ---------------------------------------------------------------------------- formatting

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Shortest representation that round-trips; integers print without exponent up to 1e15.
  auto r = (std::fabs(v) < 1e15 && v == std::floor(v))
               ? std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(v))
               : std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

bool ValidMetricName(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool ValidLabelName(const std::string& n) {
  if (n.empty() || n.rfind("__", 0) == 0) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// {a="x",b="y"} (with `extra` appended, e.g. le="0.5"); "" when there are no labels.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     const std::string& extra = "") {
  if (names.empty() && extra.empty()) return "";
  std::string s = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) s += ',';
    s += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!names.empty()) s += ',';
    s += extra;
  }
  return s + "}";
}

void RenderHeader(std::string& out, const std::string& name, const std::string& help,
                  const char* type) {
  out += "# HELP " + name + " " + EscapeHelp(help) + "\n";
  out += "# TYPE " + name + " " + type + "\n";
}

template <typename T>
void RenderScalar(std::string& out, const Family<T>& f, const char* type) {
  RenderHeader(out, f.name(), f.help(), type);
  f.ForEach([&](const std::vector<std::string>& values, const T& c) {
    out += f.name() + LabelSet(f.label_names(), values) + " " + FormatValue(c.Value()) + "\n";
  });
}

void RenderHistogram(std::string& out, const HistogramFamily& f) {
  RenderHeader(out, f.name(), f.help(), "histogram");
  f.ForEach([&](const std::vector<std::string>& values, const Histogram& h) {
    uint64_t cum = 0;
    const size_t nb = h.bounds().size();
    for (size_t i = 0; i <= nb; ++i) {
      cum += h.BucketCount(i);
      const std::string le = "le=\"" + (i < nb ? FormatValue(h.bounds()[i]) : "+Inf") + "\"";
      out += f.name() + "_bucket" + LabelSet(f.label_names(), values, le) + " " +
             std::to_string(cum) + "\n";
    }
    const std::string ls = LabelSet(f.label_names(), values);
    out += f.name() + "_sum" + ls + " " + FormatValue(h.Sum()) + "\n";
    out += f.name() + "_count" + ls + " " + std::to_string(cum) + "\n";
  });
}

}  // namespace

// ---------------------------------------------------------------------------- Registry

struct Registry::Entry {
  std::string name;
  MetricType type;
  std::variant<std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
               std::unique_ptr<HistogramFamily>>
      family;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Status Registry::CheckNew(const std::string& name, const std::vector<std::string>& label_names,
                          MetricType type) const {
  if (!ValidMetricName(name)) return InvalidArgument("metrics: bad metric name '" + name + "'");
  for (const auto& l : label_names) {
    if (!ValidLabelName(l)) {
      return InvalidArgument("metrics: " + name + ": bad label name '" + l + "'");
    }
    if (type == MetricType::kHistogram && l == "le") {
      return InvalidArgument("metrics: " + name + ": label 'le' is reserved in histograms");
    }
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    for (size_t j = i + 1; j < label_names.size(); ++j) {
      if (label_names[i] == label_names[j]) {
        return InvalidArgument("metrics: " + name + ": duplicate label '" + label_names[i] + "'");
      }
    }
  }
  for (const auto& e : entries_) {
    if (e->name == name) return InvalidArgument("metrics: '" + name + "' already registered");
  }
  return OkStatus();
}

StatusOr<CounterFamily*> Registry::AddCounter(const std::string& name, const std::string& help,
                                              const std::vector<std::string>& label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  PD_RETURN_IF_ERROR(CheckNew(name, label_names, MetricType::kCounter));
  auto f = std::make_unique<CounterFamily>(name, help, label_names);
  CounterFamily* raw = f.get();
  if (label_names.empty()) raw->Get();
  entries_.push_back(std::make_unique<Entry>(Entry{name, MetricType::kCounter, std::move(f)}));
  return raw;
}

StatusOr<GaugeFamily*> Registry::AddGauge(const std::string& name, const std::string& help,
                                          const std::vector<std::string>& label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  PD_RETURN_IF_ERROR(CheckNew(name, label_names, MetricType::kGauge));
  auto f = std::make_unique<GaugeFamily>(name, help, label_names);
  GaugeFamily* raw = f.get();
  if (label_names.empty()) raw->Get();
  entries_.push_back(std::make_unique<Entry>(Entry{name, MetricType::kGauge, std::move(f)}));
  return raw;
}

StatusOr<HistogramFamily*> Registry::AddHistogram(const std::string& name,
                                                  const std::string& help,
                                                  const std::vector<double>& bounds,
                                                  const std::vector<std::string>& label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  PD_RETURN_IF_ERROR(CheckNew(name, label_names, MetricType::kHistogram));
  if (bounds.empty()) return InvalidArgument("metrics: " + name + ": no buckets");
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (std::isnan(bounds[i]) || std::isinf(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      return InvalidArgument("metrics: " + name + ": buckets must be finite and increasing");
    }
  }
  auto f = std::make_unique<HistogramFamily>(name, help, label_names, bounds);
  HistogramFamily* raw = f.get();
  if (label_names.empty()) raw->Get();
  entries_.push_back(std::make_unique<Entry>(Entry{name, MetricType::kHistogram, std::move(f)}));
  return raw;
}

void Registry::AddCollector(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(fn));
}

std::string Registry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& c : collectors_) c();
  std::string out;
  for (const auto& e : entries_) {
    switch (e->type) {
      case MetricType::kCounter:
        RenderScalar(out, *std::get<0>(e->family), "counter");
        break;
      case MetricType::kGauge:
        RenderScalar(out, *std::get<1>(e->family), "gauge");
        break;
      case MetricType::kHistogram:
        RenderHistogram(out, *std::get<2>(e->family));
        break;
    }
  }
  return out;
}

}  // namespace pd::metrics
