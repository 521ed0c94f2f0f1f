// deploy/: each Kustomize overlay builds offline, yamllint is clean, and the config embedded in
// the generated ConfigMap is a valid pdserve deployment file whose instance list matches the
// manifests (one instance per StatefulSet pod, named after the pod, reachable at the pod's
// headless-Service DNS name on the container's ports). kubectl and yamllint come from
// scripts/setup.sh; the test does not skip when they are missing, it fails.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/deploy_config.h"
#include "util/run_shell.h"

namespace pd {
namespace {

const std::string kSrc = PD_SOURCE_DIR;

using testutil::RunShell;

// The rendered manifests of one kustomization, indexed by "Kind/name".
struct Rendered {
  std::map<std::string, YAML::Node> docs;
  std::string text;
  const YAML::Node* Find(const std::string& kind, const std::string& name) const {
    auto it = docs.find(kind + "/" + name);
    return it == docs.end() ? nullptr : &it->second;
  }
};

void Render(const std::string& dir, Rendered* r) {
  const int rc = RunShell("kubectl kustomize " + kSrc + "/" + dir, &r->text);
  ASSERT_EQ(rc, 0) << "kubectl kustomize " << dir << ":\n" << r->text;
  for (const YAML::Node& d : YAML::LoadAll(r->text)) {
    if (!d.IsMap()) continue;
    r->docs[d["kind"].as<std::string>() + "/" + d["metadata"]["name"].as<std::string>()] = d;
  }
}

// The one generated ConfigMap, named exactly "pdserve-config" (no hash suffix, so that changing
// the instance list does not roll every pod; docs/kubernetes.md).
void ConfigMapName(const Rendered& r, std::string* name) {
  for (const auto& [key, d] : r.docs) {
    if (key.rfind("ConfigMap/", 0) == 0) {
      ASSERT_TRUE(name->empty()) << "more than one ConfigMap: " << *name << ", " << key;
      *name = d["metadata"]["name"].as<std::string>();
    }
  }
  ASSERT_EQ(*name, "pdserve-config");
}

int NamedPort(const YAML::Node& container, const std::string& port_name) {
  for (const auto& p : container["ports"]) {
    if (p["name"].as<std::string>() == port_name) return p["containerPort"].as<int>();
  }
  return -1;
}

YAML::Node PdContainer(const YAML::Node& workload) {
  for (const auto& c : workload["spec"]["template"]["spec"]["containers"]) {
    if (c["name"].as<std::string>() == "pdserve") return c;
  }
  return YAML::Node();
}

// The workload mounts the ConfigMap at /etc/pdserve and the model volume at /models (the router
// reads model configs and tokenizers too), and its probes hit the gRPC port.
void CheckPodWiring(const YAML::Node& w, const std::string& cm_name, int grpc_port) {
  bool has_cm = false;
  for (const auto& v : w["spec"]["template"]["spec"]["volumes"]) {
    if (v["configMap"] && v["configMap"]["name"].as<std::string>() == cm_name) has_cm = true;
  }
  EXPECT_TRUE(has_cm) << w["metadata"]["name"] << " has no volume for " << cm_name;
  const YAML::Node c = PdContainer(w);
  ASSERT_TRUE(c.IsMap());
  std::map<std::string, std::string> mounts;
  for (const auto& m : c["volumeMounts"]) {
    mounts[m["mountPath"].as<std::string>()] = m["name"].as<std::string>();
  }
  EXPECT_EQ(mounts["/models"], "models") << w["metadata"]["name"];
  EXPECT_EQ(c["args"][1].as<std::string>(), "/etc/pdserve/pdserve.yaml");
  EXPECT_FALSE(mounts["/etc/pdserve"].empty()) << w["metadata"]["name"];
  for (const char* probe : {"readinessProbe", "livenessProbe"}) {
    ASSERT_TRUE(c[probe] && c[probe]["grpc"]) << probe << " is not a gRPC probe";
    EXPECT_EQ(c[probe]["grpc"]["port"].as<int>(), grpc_port) << probe;
  }
}

// The pod's `metrics` port is the config's metrics_port and the Prometheus scrape annotation
// names it (the daemons serve /metrics there).
void CheckMetricsPort(const YAML::Node& w, int metrics_port) {
  EXPECT_GT(metrics_port, 0) << w["metadata"]["name"] << ": metrics_port not set in the config";
  EXPECT_EQ(NamedPort(PdContainer(w), "metrics"), metrics_port) << w["metadata"]["name"];
  const YAML::Node a = w["spec"]["template"]["metadata"]["annotations"];
  ASSERT_TRUE(a && a["prometheus.io/port"]) << w["metadata"]["name"];
  EXPECT_EQ(a["prometheus.io/port"].as<int>(), metrics_port) << w["metadata"]["name"];
}

// One StatefulSet + headless Service per role; instance i = pod <role>-i.
void CheckRole(const Rendered& r, const std::string& role,
               const std::vector<InstanceConfig>& insts, const std::string& cm_name) {
  const YAML::Node* sts = r.Find("StatefulSet", role);
  const YAML::Node* svc = r.Find("Service", role);
  ASSERT_TRUE(sts && svc) << role << ": StatefulSet and Service expected";
  EXPECT_EQ((*svc)["spec"]["clusterIP"].as<std::string>(), "None") << role << " not headless";
  EXPECT_EQ((*sts)["spec"]["serviceName"].as<std::string>(), role);
  ASSERT_EQ((*sts)["spec"]["replicas"].as<size_t>(), insts.size())
      << role << ": StatefulSet replicas != instances listed in pdserve.yaml";
  const std::string ns = (*sts)["metadata"]["namespace"].as<std::string>();
  const YAML::Node c = PdContainer(*sts);
  const int grpc = NamedPort(c, "grpc"), kv = NamedPort(c, "kv");
  for (size_t i = 0; i < insts.size(); ++i) {
    const std::string pod = role + "-" + std::to_string(i);
    EXPECT_EQ(insts[i].name, pod);
    EXPECT_EQ(insts[i].host, pod + "." + role + "." + ns + ".svc.cluster.local");
    EXPECT_EQ(insts[i].port, grpc) << pod;
    EXPECT_EQ(insts[i].transport.port, kv) << pod;
    CheckMetricsPort(*sts, insts[i].metrics_port);
  }
  CheckPodWiring(*sts, cm_name, grpc);
  bool passes_pod_name = false;
  for (const auto& a : c["args"]) passes_pod_name |= a.as<std::string>() == "$(POD_NAME)";
  EXPECT_TRUE(passes_pod_name) << role << ": --instance $(POD_NAME) expected";
}

struct Expect {
  const char* dir;
  Backend backend;
  const char* transport;
  size_t prefill, decode;
};

class Overlay : public ::testing::TestWithParam<Expect> {};

TEST_P(Overlay, BuildsAndMatchesItsConfig) {
  const Expect e = GetParam();
  Rendered r;
  ASSERT_NO_FATAL_FAILURE(Render(e.dir, &r));
  std::string cm_name;
  ASSERT_NO_FATAL_FAILURE(ConfigMapName(r, &cm_name));
  const YAML::Node data = r.Find("ConfigMap", cm_name)->operator[]("data")["pdserve.yaml"];
  ASSERT_TRUE(data) << "ConfigMap has no pdserve.yaml";
  StatusOr<DeployConfig> cfg = ParseDeployConfig(data.as<std::string>());
  ASSERT_TRUE(cfg.ok()) << e.dir << ": " << cfg.status().ToString();
  EXPECT_EQ(cfg->prefill.size(), e.prefill);
  EXPECT_EQ(cfg->decode.size(), e.decode);
  ASSERT_NO_FATAL_FAILURE(CheckRole(r, "prefill", cfg->prefill, cm_name));
  ASSERT_NO_FATAL_FAILURE(CheckRole(r, "decode", cfg->decode, cm_name));

  const YAML::Node* router = r.Find("Deployment", "router");
  ASSERT_TRUE(router && r.Find("Service", "router"));
  EXPECT_EQ(NamedPort(PdContainer(*router), "grpc"), cfg->router.port);
  CheckPodWiring(*router, cm_name, cfg->router.port);
  CheckMetricsPort(*router, cfg->router.metrics_port);
  // Readiness asks the health service for the Inference service (a decode instance is healthy);
  // liveness for the server as a whole ("").
  const YAML::Node rc = PdContainer(*router);
  EXPECT_EQ(rc["readinessProbe"]["grpc"]["service"].as<std::string>(""), "pdserve.v1.Inference");
  EXPECT_EQ(rc["livenessProbe"]["grpc"]["service"].as<std::string>(""), "");

  const bool gpu = e.backend == Backend::kCuda;
  const bool rdma = std::string(e.transport) == "rdma";
  for (const auto* list : {&cfg->prefill, &cfg->decode}) {
    for (const auto& inst : *list) {
      EXPECT_EQ(inst.backend, e.backend) << inst.name;
      EXPECT_EQ(inst.transport.kind, e.transport) << inst.name;
    }
  }
  for (const char* role : {"prefill", "decode"}) {
    const YAML::Node c = PdContainer(*r.Find("StatefulSet", role));
    const YAML::Node limits = c["resources"]["limits"];
    EXPECT_EQ(bool(limits && limits["nvidia.com/gpu"]), gpu) << role;
    EXPECT_EQ(bool(limits && limits["rdma/hca_shared_devices_a"]), rdma) << role;
    bool ipc_lock = false;
    if (c["securityContext"]) {
      for (const auto& cap : c["securityContext"]["capabilities"]["add"]) {
        ipc_lock |= cap.as<std::string>() == "IPC_LOCK";
      }
    }
    EXPECT_EQ(ipc_lock, rdma) << role;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Deploy, Overlay,
    ::testing::Values(Expect{"deploy/base", Backend::kCpu, "tcp", 1, 1},
                      Expect{"deploy/overlays/cpu-dev", Backend::kCpu, "tcp", 1, 1},
                      Expect{"deploy/overlays/h100-1p1d", Backend::kCuda, "tcp", 1, 1},
                      Expect{"deploy/overlays/xpyd", Backend::kCuda, "tcp", 4, 1},
                      Expect{"deploy/overlays/rdma", Backend::kCuda, "rdma", 4, 1}),
    [](const auto& info) {
      std::string n = std::string(info.param.dir);
      n = n.substr(n.rfind('/') + 1);
      for (char& ch : n) ch = (ch == '-') ? '_' : ch;
      return n;
    });

TEST(Deploy, CpuDevNeedsNoVolumeClaim) {
  Rendered r;
  ASSERT_NO_FATAL_FAILURE(Render("deploy/overlays/cpu-dev", &r));
  EXPECT_EQ(r.text.find("persistentVolumeClaim"), std::string::npos);
  // Router, prefill and decode each make the tiny model in an init container.
  for (const auto& [kind, name] : std::vector<std::pair<std::string, std::string>>{
           {"Deployment", "router"}, {"StatefulSet", "prefill"}, {"StatefulSet", "decode"}}) {
    const YAML::Node* w = r.Find(kind, name);
    ASSERT_TRUE(w);
    const YAML::Node init = (*w)["spec"]["template"]["spec"]["initContainers"];
    ASSERT_TRUE(init && init.size() == 1) << name;
    EXPECT_EQ(init[0]["command"][0].as<std::string>(), "/opt/pdserve/bin/pd-makemodel");
  }
}

TEST(Deploy, YamllintIsClean) {
  std::string out;
  const int rc = RunShell("cd " + kSrc + " && yamllint -f parsable -c .yamllint deploy configs",
                          &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "") << "yamllint warnings:\n" << out;
}

TEST(Deploy, YamllintCatchesProblems) {
  // Guards the check above: the committed config does reject bad YAML.
  std::string out;
  const int rc = RunShell("printf 'a: 1\\na: 2\\n' | yamllint -c " + kSrc + "/.yamllint -", &out);
  EXPECT_NE(rc, 0) << out;
}

}  // namespace
}  // namespace pd
