#include "common/metrics_http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/logging.h"

namespace pd::metrics {
namespace {

class HttplibMetricsServer : public MetricsServer {
 public:
  explicit HttplibMetricsServer(const Registry* registry) : registry_(registry) {
    // httplib's default sets SO_REUSEPORT, which lets a second process bind the same port and
    // silently take half the scrapes; a busy port must be an error instead.
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(registry_->Render(), kTextContentType);
    });
    server_.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
  }
  ~HttplibMetricsServer() override { Stop(); }

  Status Start(const std::string& host, int port) {
    if (port == 0) {
      port_ = server_.bind_to_any_port(host.c_str());
    } else {
      port_ = server_.bind_to_port(host.c_str(), port) ? port : -1;
    }
    if (port_ <= 0) {
      return Unavailable("metrics: cannot listen on " + host + ":" + std::to_string(port));
    }
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      done_.store(true);
    });
    // stop() is a no-op until the accept loop runs (httplib 0.11), so wait for it to start.
    while (!server_.is_running() && !done_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    PD_LOG_INFO("metrics: serving http://{}:{}/metrics", host, port_);
    return OkStatus();
  }

  int port() const override { return port_; }

  void Stop() override {
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }

 private:
  const Registry* registry_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  std::atomic<bool> done_{false};
};

}  // namespace

StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(const std::string& host, int port,
                                                            const Registry* registry) {
  if (registry == nullptr) return InvalidArgument("metrics: registry is null");
  if (port < 0 || port > 65535) {
    return InvalidArgument("metrics: port " + std::to_string(port) + " out of range");
  }
  auto srv = std::make_unique<HttplibMetricsServer>(registry);
  PD_RETURN_IF_ERROR(srv->Start(host, port));
  return std::unique_ptr<MetricsServer>(std::move(srv));
}

}  // namespace pd::metrics
