// The real Verbs: libibverbs loaded with dlopen at run time (PD_WITH_RDMA builds only). The
// data-path calls (ibv_post_send / ibv_post_recv / ibv_poll_cq) are inline in verbs.h and go
// through the context's ops table, so only the control-path symbols are looked up.
// NOT RUN ON RDMA HARDWARE: no machine of the project has an RDMA NIC. What has run is the
// "no device" path (this machine and the GPU machine); the QP bring-up follows the standard
// RC recipe and is unverified.
#include <dlfcn.h>
#include <infiniband/verbs.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "kvtransfer/rdma/verbs.h"

namespace pd::kvtransfer::rdma {
namespace {

struct Lib {
  void* handle = nullptr;
  ibv_device** (*get_device_list)(int*) = nullptr;
  void (*free_device_list)(ibv_device**) = nullptr;
  const char* (*get_device_name)(ibv_device*) = nullptr;
  ibv_context* (*open_device)(ibv_device*) = nullptr;
  ibv_pd* (*alloc_pd)(ibv_context*) = nullptr;
  ibv_mr* (*reg_mr)(ibv_pd*, void*, size_t, int) = nullptr;
  int (*dereg_mr)(ibv_mr*) = nullptr;
  ibv_cq* (*create_cq)(ibv_context*, int, void*, ibv_comp_channel*, int) = nullptr;
  ibv_qp* (*create_qp)(ibv_pd*, ibv_qp_init_attr*) = nullptr;
  int (*modify_qp)(ibv_qp*, ibv_qp_attr*, int) = nullptr;
  int (*query_port)(ibv_context*, uint8_t, ibv_port_attr*) = nullptr;
  int (*query_gid)(ibv_context*, uint8_t, int, ibv_gid*) = nullptr;
  int (*destroy_qp)(ibv_qp*) = nullptr;
};

template <typename F>
bool Sym(void* h, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(h, name));
  return f != nullptr;
}

class IbVerbs final : public Verbs {
 public:
  IbVerbs(Lib lib, ibv_context* ctx, ibv_pd* pd, ibv_cq* cq) : lib_(lib), ctx_(ctx), pd_(pd), cq_(cq) {
    lib_.query_port(ctx_, 1, &port_);
    lib_.query_gid(ctx_, 1, 0, &gid_);
  }
  StatusOr<MemoryRegion> RegisterMemory(void* addr, size_t length) override {
    ibv_mr* mr = lib_.reg_mr(pd_, addr, length,
                             IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
    if (!mr) return Unavailable(std::string("ibv_reg_mr: ") + strerror(errno));
    mrs_[mr->lkey] = mr;
    return MemoryRegion{reinterpret_cast<uint64_t>(addr), length, mr->lkey, mr->rkey};
  }
  void DeregisterMemory(const MemoryRegion& m) override {
    auto it = mrs_.find(m.lkey);
    if (it == mrs_.end()) return;
    lib_.dereg_mr(it->second);
    mrs_.erase(it);
  }
  StatusOr<uint32_t> CreateQp() override {
    ibv_qp_init_attr a{};
    a.send_cq = cq_;
    a.recv_cq = cq_;
    a.qp_type = IBV_QPT_RC;
    a.cap.max_send_wr = 256;
    a.cap.max_recv_wr = 256;
    a.cap.max_send_sge = 16;
    a.cap.max_recv_sge = 1;
    ibv_qp* qp = lib_.create_qp(pd_, &a);
    if (!qp) return Unavailable(std::string("ibv_create_qp: ") + strerror(errno));
    ibv_qp_attr m{};
    m.qp_state = IBV_QPS_INIT;
    m.port_num = 1;
    m.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
    if (lib_.modify_qp(qp, &m, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
      return Unavailable("ibv_modify_qp(INIT) failed");
    }
    qps_[qp->qp_num] = qp;
    return qp->qp_num;
  }
  QpAddress LocalAddress(uint32_t qpn) const override {
    QpAddress a;
    a.qpn = qpn;
    a.lid = port_.lid;
    std::memcpy(a.gid.data(), gid_.raw, 16);
    return a;
  }
  Status ConnectQp(uint32_t qpn, const QpAddress& r) override {
    auto it = qps_.find(qpn);
    if (it == qps_.end()) return NotFound("rdma: unknown QP");
    ibv_qp_attr m{};
    m.qp_state = IBV_QPS_RTR;
    m.path_mtu = port_.active_mtu;
    m.dest_qp_num = r.qpn;
    m.max_dest_rd_atomic = 1;
    m.min_rnr_timer = 12;
    m.ah_attr.dlid = r.lid;
    m.ah_attr.port_num = 1;
    m.ah_attr.is_global = 1;
    std::memcpy(m.ah_attr.grh.dgid.raw, r.gid.data(), 16);
    m.ah_attr.grh.hop_limit = 64;
    if (lib_.modify_qp(it->second, &m, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                           IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
                                           IBV_QP_MIN_RNR_TIMER)) {
      return Unavailable("ibv_modify_qp(RTR) failed");
    }
    m.qp_state = IBV_QPS_RTS;
    m.timeout = 14;
    m.retry_cnt = 7;
    m.rnr_retry = 7;
    m.max_rd_atomic = 1;
    if (lib_.modify_qp(it->second, &m, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                           IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC)) {
      return Unavailable("ibv_modify_qp(RTS) failed");
    }
    return OkStatus();
  }
  Status PostWrite(uint32_t qpn, uint64_t wr_id, std::span<const Sge> sges, uint64_t remote_addr,
                   uint32_t rkey, std::optional<uint32_t> imm) override {
    auto it = qps_.find(qpn);
    if (it == qps_.end()) return NotFound("rdma: unknown QP");
    ibv_sge sg[16];
    const size_t n = std::min<size_t>(sges.size(), 16);
    for (size_t i = 0; i < n; ++i) sg[i] = {sges[i].addr, sges[i].length, sges[i].lkey};
    ibv_send_wr wr{};
    ibv_send_wr* bad = nullptr;
    wr.wr_id = wr_id;
    wr.sg_list = sg;
    wr.num_sge = static_cast<int>(n);
    wr.opcode = imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
    if (imm) wr.imm_data = *imm;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = remote_addr;
    wr.wr.rdma.rkey = rkey;
    if (ibv_post_send(it->second, &wr, &bad)) return Unavailable("ibv_post_send failed");
    return OkStatus();
  }
  Status PostRecv(uint32_t qpn, uint64_t wr_id) override {
    auto it = qps_.find(qpn);
    if (it == qps_.end()) return NotFound("rdma: unknown QP");
    ibv_recv_wr wr{};
    ibv_recv_wr* bad = nullptr;
    wr.wr_id = wr_id;
    if (ibv_post_recv(it->second, &wr, &bad)) return Unavailable("ibv_post_recv failed");
    return OkStatus();
  }
  int PollCq(std::span<Completion> out) override {
    ibv_wc wc[32];
    const int n = ibv_poll_cq(cq_, static_cast<int>(std::min<size_t>(out.size(), 32)), wc);
    for (int i = 0; i < n; ++i) {
      Completion& c = out[static_cast<size_t>(i)];
      c.wr_id = wc[i].wr_id;
      c.qpn = wc[i].qp_num;
      c.imm = wc[i].imm_data;
      c.byte_len = wc[i].byte_len;
      c.opcode = wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM ? WcOpcode::kRecvRdmaWithImm
                                                           : WcOpcode::kRdmaWrite;
      switch (wc[i].status) {
        case IBV_WC_SUCCESS: c.status = WcStatus::kSuccess; break;
        case IBV_WC_REM_ACCESS_ERR: c.status = WcStatus::kRemoteAccessError; break;
        case IBV_WC_RETRY_EXC_ERR: c.status = WcStatus::kRetryExceeded; break;
        case IBV_WC_WR_FLUSH_ERR: c.status = WcStatus::kFlushed; break;
        default: c.status = WcStatus::kOther; break;
      }
    }
    return n < 0 ? 0 : n;
  }
  void DestroyQp(uint32_t qpn) override {
    auto it = qps_.find(qpn);
    if (it == qps_.end()) return;
    lib_.destroy_qp(it->second);
    qps_.erase(it);
  }

 private:
  Lib lib_;
  ibv_context* ctx_;
  ibv_pd* pd_;
  ibv_cq* cq_;
  ibv_port_attr port_{};
  ibv_gid gid_{};
  std::map<uint32_t, ibv_qp*> qps_;
  std::map<uint32_t, ibv_mr*> mrs_;  // by lkey
};

}  // namespace

StatusOr<std::unique_ptr<Verbs>> OpenIbverbs(const std::string& device) {
  Lib lib;
  lib.handle = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib.handle) return Unavailable("rdma: libibverbs not found (no RDMA stack on this host)");
  if (!Sym(lib.handle, "ibv_get_device_list", lib.get_device_list) ||
      !Sym(lib.handle, "ibv_free_device_list", lib.free_device_list) ||
      !Sym(lib.handle, "ibv_get_device_name", lib.get_device_name) ||
      !Sym(lib.handle, "ibv_open_device", lib.open_device) ||
      !Sym(lib.handle, "ibv_alloc_pd", lib.alloc_pd) || !Sym(lib.handle, "ibv_reg_mr", lib.reg_mr) ||
      !Sym(lib.handle, "ibv_dereg_mr", lib.dereg_mr) ||
      !Sym(lib.handle, "ibv_create_cq", lib.create_cq) ||
      !Sym(lib.handle, "ibv_create_qp", lib.create_qp) ||
      !Sym(lib.handle, "ibv_modify_qp", lib.modify_qp) ||
      !Sym(lib.handle, "ibv_query_port", lib.query_port) ||
      !Sym(lib.handle, "ibv_query_gid", lib.query_gid) ||
      !Sym(lib.handle, "ibv_destroy_qp", lib.destroy_qp)) {
    return Unavailable("rdma: libibverbs lacks a required symbol");
  }
  int num = 0;
  ibv_device** list = lib.get_device_list(&num);
  if (!list || num == 0) {
    if (list) lib.free_device_list(list);
    return Unavailable("rdma: no RDMA device");
  }
  ibv_device* dev = nullptr;
  for (int i = 0; i < num; ++i) {
    if (device.empty() || device == lib.get_device_name(list[i])) {
      dev = list[i];
      break;
    }
  }
  if (!dev) {
    lib.free_device_list(list);
    return NotFound("rdma: no RDMA device named '" + device + "'");
  }
  ibv_context* ctx = lib.open_device(dev);
  lib.free_device_list(list);
  if (!ctx) return Unavailable("rdma: ibv_open_device failed");
  ibv_pd* pd = lib.alloc_pd(ctx);
  ibv_cq* cq = pd ? lib.create_cq(ctx, 4096, nullptr, nullptr, 0) : nullptr;
  if (!cq) return Unavailable("rdma: ibv_alloc_pd / ibv_create_cq failed");
  return std::unique_ptr<Verbs>(new IbVerbs(lib, ctx, pd, cq));
}

}  // namespace pd::kvtransfer::rdma
