// Prometheus metrics: Counter, Gauge, Histogram with labels, and a Registry that renders the
// text exposition format (version 0.0.4) for a /metrics endpoint (metrics_http.h serves it).
//
// Hot paths: Inc/Set/Observe are a few relaxed atomic operations on a child object and never
// allocate or lock. Families hand out children by label values (`WithLabels`); that lookup locks
// and may allocate on first use, so callers resolve children once and keep the pointer (children
// live as long as the Registry).
//
//   pd::metrics::Registry reg;
//   auto fam = reg.AddCounter("pd_requests_total", "Finished requests.", {"outcome"});
//   pd::metrics::Counter* ok = (*fam)->WithLabels({"ok"});   // once, at start-up
//   ok->Inc();                                               // per request
//   std::string text = reg.Render();
//
// Standard pdserve metric names: common/pd_metrics.h. Reference: docs/metrics.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "common/status.h"

namespace pd::metrics {

// A monotonically increasing value (Prometheus counter).
class Counter {
 public:
  // Adds `v` (must be >= 0; negative values are ignored).
  void Inc(double v = 1.0) {
    if (v >= 0) value_.fetch_add(v, std::memory_order_relaxed);
  }
  // Sets the total, for counters mirrored at scrape time from a cumulative source (e.g. the
  // block manager's prefix_hit_tokens, in a Registry collector). The source must never decrease.
  void SetTotal(double v) { value_.store(v, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (Prometheus gauge).
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  void Inc() { Add(1.0); }
  void Dec() { Add(-1.0); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets (Prometheus histogram). Buckets are upper bounds,
// strictly increasing, fixed at construction; +Inf is implicit. Rendering is cumulative.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  // Counts `v` into the first bucket whose bound is >= v (le semantics) and adds it to the sum.
  void Observe(double v);
  // Upper bounds (without +Inf).
  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket i; i == bounds().size() is the +Inf bucket.
  uint64_t BucketCount(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  // Number of observations (sum of all buckets) and their sum.
  uint64_t Count() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 entries
  std::atomic<double> sum_{0.0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// One metric name with its HELP text, label names and one child per distinct label values.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}

  // The child for these label values (created on first use; the pointer stays valid for the
  // Registry's life). Returns nullptr if the number of values differs from the label names.
  T* WithLabels(const std::vector<std::string>& values);
  // The child without labels (families registered with no label names).
  T* Get() { return WithLabels({}); }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Calls fn(label values, child) for every child in label-value order, under the family lock.
  void ForEach(const std::function<void(const std::vector<std::string>&, const T&)>& fn) const;

 private:
  std::string name_, help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;  // GUARDED_BY(mu_)
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Bucket helpers. ExponentialBuckets(0.001, 2, 4) = {0.001, 0.002, 0.004, 0.008}.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// LinearBuckets(1, 2, 3) = {1, 3, 5}.
std::vector<double> LinearBuckets(double start, double width, int count);

// Owns metric families and renders them. Thread-safe. Families render in registration order.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Register a family. INVALID_ARGUMENT for a bad metric or label name (Prometheus syntax,
  // no "__" prefix; "le" is reserved in histograms), unsorted/empty histogram buckets, or a name
  // already registered. A family without label names gets its single child at once, so it
  // renders 0 before the first update.
  StatusOr<CounterFamily*> AddCounter(const std::string& name, const std::string& help,
                                      const std::vector<std::string>& label_names = {});
  StatusOr<GaugeFamily*> AddGauge(const std::string& name, const std::string& help,
                                  const std::vector<std::string>& label_names = {});
  StatusOr<HistogramFamily*> AddHistogram(const std::string& name, const std::string& help,
                                          const std::vector<double>& bounds,
                                          const std::vector<std::string>& label_names = {});

  // Registers fn to run at the start of every Render() (e.g. to copy block-manager counts into
  // gauges at scrape time). fn runs under the registry lock: it must not call Render() or Add*().
  void AddCollector(std::function<void()> fn);

  // The text exposition format: "# HELP", "# TYPE", then one line per sample; label values
  // escaped (\\, \", \n), HELP escaped (\\, \n), histograms as cumulative _bucket{le=...},
  // _sum and _count.
  std::string Render() const;

 private:
  struct Entry;
  Status CheckNew(const std::string& name, const std::vector<std::string>& label_names,
                  MetricType type) const;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;   // GUARDED_BY(mu_)
  std::vector<std::function<void()>> collectors_;  // GUARDED_BY(mu_)
};

// Content-Type of Render()'s output.
inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Helpers exposed for tests: value formatting ("1", "0.25", "+Inf", "NaN") and escaping.
std::string FormatValue(double v);
std::string EscapeLabelValue(const std::string& v);
std::string EscapeHelp(const std::string& v);

// ---------------------------------------------------------------------------- implementation

template <typename T>
T* Family<T>::WithLabels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = children_.find(values);
  if (it != children_.end()) return it->second.get();
  std::unique_ptr<T> child;
  if constexpr (std::is_same_v<T, Histogram>) {
    child = std::make_unique<T>(bounds_);
  } else {
    child = std::make_unique<T>();
  }
  T* raw = child.get();
  children_.emplace(values, std::move(child));
  return raw;
}

template <typename T>
void Family<T>::ForEach(
    const std::function<void(const std::vector<std::string>&, const T&)>& fn) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, child] : children_) fn(values, *child);
}

}  // namespace pd::metrics
