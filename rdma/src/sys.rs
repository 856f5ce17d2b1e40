//! Hand-written FFI to libibverbs and librdmacm (rdma-core 44, x86_64 Linux), loaded at run
//! time with `dlopen`/`dlsym`.
//!
//! Nothing here is linked at build time: the binary starts on machines without rdma-core and
//! only [`lib`] fails, with a message saying what to install, when RDMA is actually used.
//!
//! The structs below are `#[repr(C)]` copies of the ones in `<infiniband/verbs.h>` and
//! `<rdma/rdma_cma.h>`, limited to what the transport needs. Fields the transport never reads
//! are still declared (sometimes as `*mut c_void` placeholders) so that every offset after them
//! is right. `rdma/tests/layout.rs` compiles a C program against the real headers and checks
//! every size, alignment, offset and constant declared here.
//!
//! The verbs that `verbs.h` defines as `static inline` (`ibv_post_send`, `ibv_post_recv`,
//! `ibv_poll_cq`, `ibv_req_notify_cq`) are not exported by the library; they are reimplemented
//! here exactly as the header does, by calling through `context->ops`. The same goes for
//! `rdma_get_local_addr` / `rdma_get_peer_addr`, which `rdma_cma.h` defines inline.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::fmt;
use std::io;
use std::marker::{PhantomData, PhantomPinned};
use std::ptr;
use std::sync::OnceLock;

use libc::{
    pthread_cond_t, pthread_mutex_t, sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage,
};

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/// `enum ibv_wr_opcode`
pub const IBV_WR_RDMA_WRITE: c_uint = 0;
/// `enum ibv_wr_opcode`
pub const IBV_WR_SEND: c_uint = 2;
/// `enum ibv_wr_opcode`
pub const IBV_WR_RDMA_READ: c_uint = 4;

/// `enum ibv_send_flags`
pub const IBV_SEND_SIGNALED: c_uint = 1 << 1;

/// `enum ibv_access_flags` (passed to `ibv_reg_mr` as `int`)
pub const IBV_ACCESS_LOCAL_WRITE: c_int = 1;
/// `enum ibv_access_flags`
pub const IBV_ACCESS_REMOTE_WRITE: c_int = 1 << 1;
/// `enum ibv_access_flags`
pub const IBV_ACCESS_REMOTE_READ: c_int = 1 << 2;

/// `enum ibv_qp_type`
pub const IBV_QPT_RC: c_uint = 2;

/// `enum ibv_wc_status`
pub const IBV_WC_SUCCESS: c_uint = 0;

/// `enum ibv_wc_opcode`
pub const IBV_WC_SEND: c_uint = 0;
/// `enum ibv_wc_opcode`
pub const IBV_WC_RDMA_WRITE: c_uint = 1;
/// `enum ibv_wc_opcode`
pub const IBV_WC_RDMA_READ: c_uint = 2;
/// `enum ibv_wc_opcode`; receive completions can be tested with `opcode & IBV_WC_RECV`.
pub const IBV_WC_RECV: c_uint = 1 << 7;

/// `enum rdma_port_space`
pub const RDMA_PS_TCP: c_uint = 0x0106;

/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_ADDR_RESOLVED: c_uint = 0;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_ADDR_ERROR: c_uint = 1;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_ROUTE_RESOLVED: c_uint = 2;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_ROUTE_ERROR: c_uint = 3;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_CONNECT_REQUEST: c_uint = 4;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_CONNECT_RESPONSE: c_uint = 5;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_CONNECT_ERROR: c_uint = 6;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_UNREACHABLE: c_uint = 7;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_REJECTED: c_uint = 8;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_ESTABLISHED: c_uint = 9;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_DISCONNECTED: c_uint = 10;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_DEVICE_REMOVAL: c_uint = 11;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_MULTICAST_JOIN: c_uint = 12;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_MULTICAST_ERROR: c_uint = 13;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_ADDR_CHANGE: c_uint = 14;
/// `enum rdma_cm_event_type`
pub const RDMA_CM_EVENT_TIMEWAIT_EXIT: c_uint = 15;

// ---------------------------------------------------------------------------------------------
// libibverbs structs
// ---------------------------------------------------------------------------------------------

/// Marker that makes an opaque FFI type `!Send`, `!Sync` and `!Unpin`.
type Opaque = PhantomData<(*mut u8, PhantomPinned)>;

/// `struct ibv_device`: only ever used behind a pointer.
#[repr(C)]
pub struct ibv_device {
    _data: [u8; 0],
    _marker: Opaque,
}

/// `struct ibv_srq`: only ever used behind a pointer.
#[repr(C)]
pub struct ibv_srq {
    _data: [u8; 0],
    _marker: Opaque,
}

/// `struct ibv_ah`: only ever used behind a pointer.
#[repr(C)]
pub struct ibv_ah {
    _data: [u8; 0],
    _marker: Opaque,
}

/// `struct ibv_mw`: only ever used behind a pointer.
#[repr(C)]
pub struct ibv_mw {
    _data: [u8; 0],
    _marker: Opaque,
}

/// `struct ibv_sa_path_rec`: only ever used behind a pointer.
#[repr(C)]
pub struct ibv_sa_path_rec {
    _data: [u8; 0],
    _marker: Opaque,
}

/// `ops.post_send` / `ibv_post_send`
pub type PostSendFn = unsafe extern "C" fn(
    qp: *mut ibv_qp,
    wr: *mut ibv_send_wr,
    bad_wr: *mut *mut ibv_send_wr,
) -> c_int;
/// `ops.post_recv` / `ibv_post_recv`
pub type PostRecvFn = unsafe extern "C" fn(
    qp: *mut ibv_qp,
    wr: *mut ibv_recv_wr,
    bad_wr: *mut *mut ibv_recv_wr,
) -> c_int;
/// `ops.poll_cq` / `ibv_poll_cq`
pub type PollCqFn =
    unsafe extern "C" fn(cq: *mut ibv_cq, num_entries: c_int, wc: *mut ibv_wc) -> c_int;
/// `ops.req_notify_cq` / `ibv_req_notify_cq`
pub type ReqNotifyCqFn = unsafe extern "C" fn(cq: *mut ibv_cq, solicited_only: c_int) -> c_int;

/// `struct ibv_context_ops`: 32 function pointers. Only the four the inline verbs call are
/// typed; the others are placeholders of pointer size.
#[repr(C)]
pub struct ibv_context_ops {
    pub _compat_query_device: *mut c_void,
    pub _compat_query_port: *mut c_void,
    pub _compat_alloc_pd: *mut c_void,
    pub _compat_dealloc_pd: *mut c_void,
    pub _compat_reg_mr: *mut c_void,
    pub _compat_rereg_mr: *mut c_void,
    pub _compat_dereg_mr: *mut c_void,
    pub alloc_mw: *mut c_void,
    pub bind_mw: *mut c_void,
    pub dealloc_mw: *mut c_void,
    pub _compat_create_cq: *mut c_void,
    pub poll_cq: Option<PollCqFn>,
    pub req_notify_cq: Option<ReqNotifyCqFn>,
    pub _compat_cq_event: *mut c_void,
    pub _compat_resize_cq: *mut c_void,
    pub _compat_destroy_cq: *mut c_void,
    pub _compat_create_srq: *mut c_void,
    pub _compat_modify_srq: *mut c_void,
    pub _compat_query_srq: *mut c_void,
    pub _compat_destroy_srq: *mut c_void,
    pub post_srq_recv: *mut c_void,
    pub _compat_create_qp: *mut c_void,
    pub _compat_query_qp: *mut c_void,
    pub _compat_modify_qp: *mut c_void,
    pub _compat_destroy_qp: *mut c_void,
    pub post_send: Option<PostSendFn>,
    pub post_recv: Option<PostRecvFn>,
    pub _compat_create_ah: *mut c_void,
    pub _compat_destroy_ah: *mut c_void,
    pub _compat_attach_mcast: *mut c_void,
    pub _compat_detach_mcast: *mut c_void,
    pub _compat_async_event: *mut c_void,
}

/// `struct ibv_context`
#[repr(C)]
pub struct ibv_context {
    pub device: *mut ibv_device,
    pub ops: ibv_context_ops,
    pub cmd_fd: c_int,
    pub async_fd: c_int,
    pub num_comp_vectors: c_int,
    pub mutex: pthread_mutex_t,
    pub abi_compat: *mut c_void,
}

/// `struct ibv_pd`
#[repr(C)]
pub struct ibv_pd {
    pub context: *mut ibv_context,
    pub handle: u32,
}

/// `struct ibv_comp_channel`
#[repr(C)]
pub struct ibv_comp_channel {
    pub context: *mut ibv_context,
    pub fd: c_int,
    pub refcnt: c_int,
}

/// `struct ibv_cq`
#[repr(C)]
pub struct ibv_cq {
    pub context: *mut ibv_context,
    pub channel: *mut ibv_comp_channel,
    pub cq_context: *mut c_void,
    pub handle: u32,
    pub cqe: c_int,
    pub mutex: pthread_mutex_t,
    pub cond: pthread_cond_t,
    pub comp_events_completed: u32,
    pub async_events_completed: u32,
}

/// `struct ibv_mr`
#[repr(C)]
pub struct ibv_mr {
    pub context: *mut ibv_context,
    pub pd: *mut ibv_pd,
    pub addr: *mut c_void,
    pub length: usize,
    pub handle: u32,
    pub lkey: u32,
    pub rkey: u32,
}

/// `struct ibv_qp`
#[repr(C)]
pub struct ibv_qp {
    pub context: *mut ibv_context,
    pub qp_context: *mut c_void,
    pub pd: *mut ibv_pd,
    pub send_cq: *mut ibv_cq,
    pub recv_cq: *mut ibv_cq,
    pub srq: *mut ibv_srq,
    pub handle: u32,
    pub qp_num: u32,
    /// `enum ibv_qp_state`
    pub state: c_uint,
    /// `enum ibv_qp_type`
    pub qp_type: c_uint,
    pub mutex: pthread_mutex_t,
    pub cond: pthread_cond_t,
    pub events_completed: u32,
}

/// `struct ibv_qp_cap`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ibv_qp_cap {
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline_data: u32,
}

/// `struct ibv_qp_init_attr`
#[repr(C)]
pub struct ibv_qp_init_attr {
    pub qp_context: *mut c_void,
    pub send_cq: *mut ibv_cq,
    pub recv_cq: *mut ibv_cq,
    pub srq: *mut ibv_srq,
    pub cap: ibv_qp_cap,
    /// `enum ibv_qp_type`
    pub qp_type: c_uint,
    pub sq_sig_all: c_int,
}

/// `struct ibv_sge`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ibv_sge {
    pub addr: u64,
    pub length: u32,
    pub lkey: u32,
}

/// `ibv_send_wr.wr.rdma`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ibv_send_wr_rdma {
    pub remote_addr: u64,
    pub rkey: u32,
}

/// `ibv_send_wr.wr.atomic`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ibv_send_wr_atomic {
    pub remote_addr: u64,
    pub compare_add: u64,
    pub swap: u64,
    pub rkey: u32,
}

/// `ibv_send_wr.wr.ud`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ibv_send_wr_ud {
    pub ah: *mut ibv_ah,
    pub remote_qpn: u32,
    pub remote_qkey: u32,
}

/// `ibv_send_wr.wr`
#[repr(C)]
#[derive(Clone, Copy)]
pub union ibv_send_wr_wr {
    pub rdma: ibv_send_wr_rdma,
    pub atomic: ibv_send_wr_atomic,
    pub ud: ibv_send_wr_ud,
}

/// `ibv_send_wr.qp_type.xrc`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ibv_send_wr_xrc {
    pub remote_srqn: u32,
}

/// `ibv_send_wr.qp_type`
#[repr(C)]
#[derive(Clone, Copy)]
pub union ibv_send_wr_qp_type {
    pub xrc: ibv_send_wr_xrc,
}

/// `struct ibv_mw_bind_info`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ibv_mw_bind_info {
    pub mr: *mut ibv_mr,
    pub addr: u64,
    pub length: u64,
    pub mw_access_flags: c_uint,
}

/// `ibv_send_wr.bind_mw`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ibv_send_wr_bind_mw {
    pub mw: *mut ibv_mw,
    pub rkey: u32,
    pub bind_info: ibv_mw_bind_info,
}

/// `ibv_send_wr.tso`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ibv_send_wr_tso {
    pub hdr: *mut c_void,
    pub hdr_sz: u16,
    pub mss: u16,
}

/// The anonymous trailing union of `struct ibv_send_wr` (`bind_mw` / `tso`).
#[repr(C)]
#[derive(Clone, Copy)]
pub union ibv_send_wr_bind_mw_or_tso {
    pub bind_mw: ibv_send_wr_bind_mw,
    pub tso: ibv_send_wr_tso,
}

/// `struct ibv_send_wr`
#[repr(C)]
pub struct ibv_send_wr {
    pub wr_id: u64,
    pub next: *mut ibv_send_wr,
    pub sg_list: *mut ibv_sge,
    pub num_sge: c_int,
    /// `enum ibv_wr_opcode`
    pub opcode: c_uint,
    pub send_flags: c_uint,
    /// The anonymous union `{ __be32 imm_data; uint32_t invalidate_rkey; }`.
    pub imm_data: u32,
    pub wr: ibv_send_wr_wr,
    pub qp_type: ibv_send_wr_qp_type,
    pub bind_mw_or_tso: ibv_send_wr_bind_mw_or_tso,
}

impl ibv_send_wr {
    /// An all-zero work request (no next, no sges, opcode `IBV_WR_RDMA_WRITE`, no flags).
    pub fn zeroed() -> ibv_send_wr {
        ibv_send_wr {
            wr_id: 0,
            next: ptr::null_mut(),
            sg_list: ptr::null_mut(),
            num_sge: 0,
            opcode: 0,
            send_flags: 0,
            imm_data: 0,
            wr: ibv_send_wr_wr {
                atomic: ibv_send_wr_atomic::default(),
            },
            qp_type: ibv_send_wr_qp_type {
                xrc: ibv_send_wr_xrc::default(),
            },
            bind_mw_or_tso: ibv_send_wr_bind_mw_or_tso {
                bind_mw: ibv_send_wr_bind_mw {
                    mw: ptr::null_mut(),
                    rkey: 0,
                    bind_info: ibv_mw_bind_info {
                        mr: ptr::null_mut(),
                        addr: 0,
                        length: 0,
                        mw_access_flags: 0,
                    },
                },
            },
        }
    }
}

/// `struct ibv_recv_wr`
#[repr(C)]
pub struct ibv_recv_wr {
    pub wr_id: u64,
    pub next: *mut ibv_recv_wr,
    pub sg_list: *mut ibv_sge,
    pub num_sge: c_int,
}

/// `struct ibv_wc`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ibv_wc {
    pub wr_id: u64,
    /// `enum ibv_wc_status`
    pub status: c_uint,
    /// `enum ibv_wc_opcode`; undefined unless `status == IBV_WC_SUCCESS`.
    pub opcode: c_uint,
    pub vendor_err: u32,
    pub byte_len: u32,
    /// The anonymous union `{ __be32 imm_data; uint32_t invalidated_rkey; }`.
    pub imm_data: u32,
    pub qp_num: u32,
    pub src_qp: u32,
    pub wc_flags: c_uint,
    pub pkey_index: u16,
    pub slid: u16,
    pub sl: u8,
    pub dlid_path_bits: u8,
}

/// `union ibv_gid`, global view.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ibv_gid_global {
    pub subnet_prefix: u64,
    pub interface_id: u64,
}

/// `union ibv_gid`
#[repr(C)]
#[derive(Clone, Copy)]
pub union ibv_gid {
    pub raw: [u8; 16],
    pub global: ibv_gid_global,
}

/// `struct ibv_global_route`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ibv_global_route {
    pub dgid: ibv_gid,
    pub flow_label: u32,
    pub sgid_index: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
}

/// `struct ibv_ah_attr`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ibv_ah_attr {
    pub grh: ibv_global_route,
    pub dlid: u16,
    pub sl: u8,
    pub src_path_bits: u8,
    pub static_rate: u8,
    pub is_global: u8,
    pub port_num: u8,
}

// ---------------------------------------------------------------------------------------------
// librdmacm structs
// ---------------------------------------------------------------------------------------------

/// `struct rdma_event_channel`
#[repr(C)]
pub struct rdma_event_channel {
    pub fd: c_int,
}

/// `struct rdma_ib_addr`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rdma_ib_addr {
    pub sgid: ibv_gid,
    pub dgid: ibv_gid,
    pub pkey: u16,
}

/// The anonymous `sockaddr` unions of `struct rdma_addr` (`src_addr`/`src_sin`/`src_sin6`/
/// `src_storage`, and the same for `dst_`).
#[repr(C)]
#[derive(Clone, Copy)]
pub union rdma_sockaddr {
    pub addr: sockaddr,
    pub sin: sockaddr_in,
    pub sin6: sockaddr_in6,
    pub storage: sockaddr_storage,
}

/// `rdma_addr.addr`
#[repr(C)]
#[derive(Clone, Copy)]
pub union rdma_addr_addr {
    pub ibaddr: rdma_ib_addr,
}

/// `struct rdma_addr`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rdma_addr {
    pub src: rdma_sockaddr,
    pub dst: rdma_sockaddr,
    pub addr: rdma_addr_addr,
}

/// `struct rdma_route`
#[repr(C)]
pub struct rdma_route {
    pub addr: rdma_addr,
    pub path_rec: *mut ibv_sa_path_rec,
    pub num_paths: c_int,
}

/// `struct rdma_cm_id`
#[repr(C)]
pub struct rdma_cm_id {
    pub verbs: *mut ibv_context,
    pub channel: *mut rdma_event_channel,
    pub context: *mut c_void,
    pub qp: *mut ibv_qp,
    pub route: rdma_route,
    /// `enum rdma_port_space`
    pub ps: c_uint,
    pub port_num: u8,
    pub event: *mut rdma_cm_event,
    pub send_cq_channel: *mut ibv_comp_channel,
    pub send_cq: *mut ibv_cq,
    pub recv_cq_channel: *mut ibv_comp_channel,
    pub recv_cq: *mut ibv_cq,
    pub srq: *mut ibv_srq,
    pub pd: *mut ibv_pd,
    /// `enum ibv_qp_type`
    pub qp_type: c_uint,
}

/// `struct rdma_conn_param`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rdma_conn_param {
    pub private_data: *const c_void,
    pub private_data_len: u8,
    pub responder_resources: u8,
    pub initiator_depth: u8,
    pub flow_control: u8,
    /// Ignored when accepting.
    pub retry_count: u8,
    pub rnr_retry_count: u8,
    /// Ignored if a QP is created on the `rdma_cm_id`.
    pub srq: u8,
    /// Ignored if a QP is created on the `rdma_cm_id`.
    pub qp_num: u32,
}

/// `struct rdma_ud_param`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rdma_ud_param {
    pub private_data: *const c_void,
    pub private_data_len: u8,
    pub ah_attr: ibv_ah_attr,
    pub qp_num: u32,
    pub qkey: u32,
}

/// `rdma_cm_event.param`
#[repr(C)]
#[derive(Clone, Copy)]
pub union rdma_cm_event_param {
    pub conn: rdma_conn_param,
    pub ud: rdma_ud_param,
}

/// `struct rdma_cm_event`
#[repr(C)]
pub struct rdma_cm_event {
    pub id: *mut rdma_cm_id,
    pub listen_id: *mut rdma_cm_id,
    /// `enum rdma_cm_event_type`
    pub event: c_uint,
    pub status: c_int,
    pub param: rdma_cm_event_param,
}

// ---------------------------------------------------------------------------------------------
// Inline functions of verbs.h / rdma_cma.h
// ---------------------------------------------------------------------------------------------

/// `ibv_post_send` as `verbs.h` defines it: `qp->context->ops.post_send(qp, wr, bad_wr)`.
/// Returns 0 or a positive errno value (`EOPNOTSUPP` if the provider has no such op).
///
/// # Safety
/// `qp` must be a live QP, `wr` a valid chain of work requests whose sges are registered
/// memory that stays valid until their completions are polled, `bad_wr` writable.
pub unsafe fn ibv_post_send(
    qp: *mut ibv_qp,
    wr: *mut ibv_send_wr,
    bad_wr: *mut *mut ibv_send_wr,
) -> c_int {
    // SAFETY: the caller guarantees `qp` is live; a live QP's `context` points at its live
    // `ibv_context`, whose `ops` table the provider filled in.
    let op = unsafe { (*(*qp).context).ops.post_send };
    match op {
        // SAFETY: same arguments and contract as the C inline function.
        Some(f) => unsafe { f(qp, wr, bad_wr) },
        None => libc::EOPNOTSUPP,
    }
}

/// `ibv_post_recv` as `verbs.h` defines it: `qp->context->ops.post_recv(qp, wr, bad_wr)`.
/// Returns 0 or a positive errno value.
///
/// # Safety
/// As for [`ibv_post_send`].
pub unsafe fn ibv_post_recv(
    qp: *mut ibv_qp,
    wr: *mut ibv_recv_wr,
    bad_wr: *mut *mut ibv_recv_wr,
) -> c_int {
    // SAFETY: the caller guarantees `qp` is live, hence so is its context and ops table.
    let op = unsafe { (*(*qp).context).ops.post_recv };
    match op {
        // SAFETY: same arguments and contract as the C inline function.
        Some(f) => unsafe { f(qp, wr, bad_wr) },
        None => libc::EOPNOTSUPP,
    }
}

/// `ibv_poll_cq` as `verbs.h` defines it: `cq->context->ops.poll_cq(cq, num_entries, wc)`.
/// Returns the number of completions written to `wc`, or a negative value on error.
///
/// # Safety
/// `cq` must be a live CQ and `wc` must point at `num_entries` writable `ibv_wc`s.
pub unsafe fn ibv_poll_cq(cq: *mut ibv_cq, num_entries: c_int, wc: *mut ibv_wc) -> c_int {
    // SAFETY: the caller guarantees `cq` is live, hence so is its context and ops table.
    let op = unsafe { (*(*cq).context).ops.poll_cq };
    match op {
        // SAFETY: same arguments and contract as the C inline function.
        Some(f) => unsafe { f(cq, num_entries, wc) },
        None => -libc::EOPNOTSUPP,
    }
}

/// `ibv_req_notify_cq` as `verbs.h` defines it: `cq->context->ops.req_notify_cq(cq, solicited_only)`.
/// Returns 0 or a positive errno value.
///
/// # Safety
/// `cq` must be a live CQ.
pub unsafe fn ibv_req_notify_cq(cq: *mut ibv_cq, solicited_only: c_int) -> c_int {
    // SAFETY: the caller guarantees `cq` is live, hence so is its context and ops table.
    let op = unsafe { (*(*cq).context).ops.req_notify_cq };
    match op {
        // SAFETY: same arguments and contract as the C inline function.
        Some(f) => unsafe { f(cq, solicited_only) },
        None => libc::EOPNOTSUPP,
    }
}

/// `rdma_get_local_addr` as `rdma_cma.h` defines it (it is `static inline`, not exported):
/// `&id->route.addr.src_addr`.
///
/// # Safety
/// `id` must point at a live `rdma_cm_id`.
pub unsafe fn rdma_get_local_addr(id: *mut rdma_cm_id) -> *mut sockaddr {
    // SAFETY: the caller guarantees `id` is live; this only computes a field address.
    unsafe { ptr::addr_of_mut!((*id).route.addr.src).cast() }
}

/// `rdma_get_peer_addr` as `rdma_cma.h` defines it: `&id->route.addr.dst_addr`.
///
/// # Safety
/// `id` must point at a live `rdma_cm_id`.
pub unsafe fn rdma_get_peer_addr(id: *mut rdma_cm_id) -> *mut sockaddr {
    // SAFETY: the caller guarantees `id` is live; this only computes a field address.
    unsafe { ptr::addr_of_mut!((*id).route.addr.dst).cast() }
}

// ---------------------------------------------------------------------------------------------
// The function table
// ---------------------------------------------------------------------------------------------

/// The shared object names passed to `dlopen` (the SONAMEs, so the `-dev` packages are not
/// needed at run time).
pub const LIBIBVERBS: &str = "libibverbs.so.1";
/// See [`LIBIBVERBS`].
pub const LIBRDMACM: &str = "librdmacm.so.1";

/// Why [`lib`] could not load rdma-core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// `dlopen` failed.
    Library {
        library: &'static str,
        dlerror: String,
    },
    /// The library loaded but lacks a symbol (at the symbol version we were written for).
    Symbol {
        library: &'static str,
        symbol: &'static str,
        version: &'static str,
        dlerror: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Library { library, dlerror } => write!(
                f,
                "RDMA is enabled but {library} could not be loaded: {dlerror}; install the rdma-core \
                 libraries (Debian: libibverbs1 librdmacm1 ibverbs-providers)"
            ),
            LoadError::Symbol {
                library,
                symbol,
                version,
                dlerror,
            } => write!(
                f,
                "RDMA is enabled but {library} has no symbol {symbol}@{version}: {dlerror}; \
                 install rdma-core 44 or newer (Debian: libibverbs1 librdmacm1 ibverbs-providers)"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<LoadError> for io::Error {
    fn from(err: LoadError) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, err)
    }
}

/// A `dlopen`ed library. Never closed: the function pointers in [`Lib`] are `'static`.
struct Handle {
    ptr: *mut c_void,
    name: &'static str,
}

/// The text of the last `dlerror()`, or a placeholder.
fn dlerror_string() -> String {
    // SAFETY: dlerror takes no arguments; glibc keeps its message per thread.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown dlerror".to_owned()
    } else {
        // SAFETY: a non-null dlerror result is a NUL-terminated string valid until the next dl*
        // call on this thread; it is copied out at once.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Handle {
    fn open(name: &'static str) -> Result<Handle, LoadError> {
        let c_name = std::ffi::CString::new(name).expect("library names have no NUL");
        // SAFETY: `c_name` is a valid C string. Loading rdma-core runs its constructors, which
        // only initialise the library's own state.
        let ptr = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if ptr.is_null() {
            return Err(LoadError::Library {
                library: name,
                dlerror: dlerror_string(),
            });
        }
        Ok(Handle { ptr, name })
    }

    /// Looks up `symbol` at symbol version `version` (both NUL-terminated). On glibc this uses
    /// `dlvsym`, so the ABI we get is the one the declarations here were written for even if a
    /// later rdma-core adds a newer default version of the symbol.
    fn sym(&self, symbol: &'static str, version: &'static str) -> Result<*mut c_void, LoadError> {
        #[cfg(target_env = "gnu")]
        // SAFETY: handle is a live dlopen handle; both strings are NUL-terminated literals.
        let ptr = unsafe {
            libc::dlvsym(
                self.ptr,
                symbol.as_ptr().cast::<c_char>(),
                version.as_ptr().cast::<c_char>(),
            )
        };
        #[cfg(not(target_env = "gnu"))]
        // SAFETY: handle is a live dlopen handle; the symbol is a NUL-terminated literal.
        let ptr = unsafe { libc::dlsym(self.ptr, symbol.as_ptr().cast::<c_char>()) };
        if ptr.is_null() {
            return Err(LoadError::Symbol {
                library: self.name,
                symbol: symbol.trim_end_matches('\0'),
                version: version.trim_end_matches('\0'),
                dlerror: dlerror_string(),
            });
        }
        Ok(ptr)
    }
}

macro_rules! functions {
    ($(
        $(#[$doc:meta])*
        $lib:ident $version:literal fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;
    )*) => {
        /// Every exported libibverbs/librdmacm function the transport calls, resolved once by
        /// [`lib`]. Fields are the C functions of the same name, with the C contracts.
        #[derive(Debug)]
        pub struct Lib {
            $(
                $(#[$doc])*
                pub $name: unsafe extern "C" fn($($arg: $ty),*) $(-> $ret)?,
            )*
        }

        impl Lib {
            /// `(library, symbol, version)` of every function in the table.
            pub const SYMBOLS: &'static [(&'static str, &'static str, &'static str)] = &[
                $(($lib, stringify!($name), $version),)*
            ];

            fn resolve(ibverbs: &Handle, rdmacm: &Handle) -> Result<Lib, LoadError> {
                let pick = |lib: &str| if lib == LIBIBVERBS { ibverbs } else { rdmacm };
                Ok(Lib {
                    $(
                        $name: {
                            let ptr = pick($lib).sym(
                                concat!(stringify!($name), "\0"),
                                concat!($version, "\0"),
                            )?;
                            // SAFETY: `ptr` is the non-null address of the C function of this
                            // name and symbol version, whose prototype in rdma-core 44's
                            // headers is exactly the declared fn type.
                            unsafe {
                                std::mem::transmute::<
                                    *mut c_void,
                                    unsafe extern "C" fn($($ty),*) $(-> $ret)?,
                                >(ptr)
                            }
                        },
                    )*
                })
            }

            /// The resolved address of every function, in [`Lib::SYMBOLS`] order.
            pub fn addresses(&self) -> Vec<(&'static str, *const c_void)> {
                vec![$((stringify!($name), self.$name as *const c_void),)*]
            }
        }
    };
}

functions! {
    LIBIBVERBS "IBVERBS_1.1" fn ibv_alloc_pd(context: *mut ibv_context) -> *mut ibv_pd;
    /// Returns 0 or an errno value.
    LIBIBVERBS "IBVERBS_1.1" fn ibv_dealloc_pd(pd: *mut ibv_pd) -> c_int;
    /// The exported `ibv_reg_mr@@IBVERBS_1.1` (`verbs.h` wraps it in a macro that only switches
    /// to `ibv_reg_mr_iova2` for the optional access flags, which we never use).
    LIBIBVERBS "IBVERBS_1.1" fn ibv_reg_mr(pd: *mut ibv_pd, addr: *mut c_void, length: usize, access: c_int) -> *mut ibv_mr;
    /// Returns 0 or an errno value.
    LIBIBVERBS "IBVERBS_1.1" fn ibv_dereg_mr(mr: *mut ibv_mr) -> c_int;
    LIBIBVERBS "IBVERBS_1.0" fn ibv_create_comp_channel(context: *mut ibv_context) -> *mut ibv_comp_channel;
    /// Returns 0 or an errno value.
    LIBIBVERBS "IBVERBS_1.0" fn ibv_destroy_comp_channel(channel: *mut ibv_comp_channel) -> c_int;
    LIBIBVERBS "IBVERBS_1.1" fn ibv_create_cq(
        context: *mut ibv_context,
        cqe: c_int,
        cq_context: *mut c_void,
        channel: *mut ibv_comp_channel,
        comp_vector: c_int,
    ) -> *mut ibv_cq;
    /// Returns 0 or an errno value.
    LIBIBVERBS "IBVERBS_1.1" fn ibv_destroy_cq(cq: *mut ibv_cq) -> c_int;
    /// Returns 0, or -1 with `errno` set.
    LIBIBVERBS "IBVERBS_1.1" fn ibv_get_cq_event(
        channel: *mut ibv_comp_channel,
        cq: *mut *mut ibv_cq,
        cq_context: *mut *mut c_void,
    ) -> c_int;
    LIBIBVERBS "IBVERBS_1.1" fn ibv_ack_cq_events(cq: *mut ibv_cq, nevents: c_uint);
    LIBIBVERBS "IBVERBS_1.1" fn ibv_wc_status_str(status: c_uint) -> *const c_char;
    LIBIBVERBS "IBVERBS_1.1" fn ibv_get_device_name(device: *mut ibv_device) -> *const c_char;

    LIBRDMACM "RDMACM_1.0" fn rdma_create_event_channel() -> *mut rdma_event_channel;
    LIBRDMACM "RDMACM_1.0" fn rdma_destroy_event_channel(channel: *mut rdma_event_channel);
    /// Every `int`-returning `rdma_*` function returns 0, or -1 with `errno` set.
    LIBRDMACM "RDMACM_1.0" fn rdma_create_id(
        channel: *mut rdma_event_channel,
        id: *mut *mut rdma_cm_id,
        context: *mut c_void,
        ps: c_uint,
    ) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_destroy_id(id: *mut rdma_cm_id) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_bind_addr(id: *mut rdma_cm_id, addr: *mut sockaddr) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_listen(id: *mut rdma_cm_id, backlog: c_int) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_get_cm_event(channel: *mut rdma_event_channel, event: *mut *mut rdma_cm_event) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_ack_cm_event(event: *mut rdma_cm_event) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_accept(id: *mut rdma_cm_id, conn_param: *mut rdma_conn_param) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_reject(id: *mut rdma_cm_id, private_data: *const c_void, private_data_len: u8) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_disconnect(id: *mut rdma_cm_id) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_create_qp(id: *mut rdma_cm_id, pd: *mut ibv_pd, qp_init_attr: *mut ibv_qp_init_attr) -> c_int;
    LIBRDMACM "RDMACM_1.0" fn rdma_destroy_qp(id: *mut rdma_cm_id);
    LIBRDMACM "RDMACM_1.0" fn rdma_event_str(event: c_uint) -> *const c_char;
}

fn load(ibverbs: &'static str, rdmacm: &'static str) -> Result<Lib, LoadError> {
    // libibverbs first, so that a machine without rdma-core gets the message naming it.
    let ibverbs = Handle::open(ibverbs)?;
    let rdmacm = Handle::open(rdmacm)?;
    Lib::resolve(&ibverbs, &rdmacm)
    // The handles are dropped without dlclose: the libraries stay loaded for the process's life.
}

/// Loads libibverbs and librdmacm and resolves every function, once per process; later calls
/// return the cached table or the cached error.
pub fn lib() -> Result<&'static Lib, LoadError> {
    static LIB: OnceLock<Result<Lib, LoadError>> = OnceLock::new();
    LIB.get_or_init(|| load(LIBIBVERBS, LIBRDMACM))
        .as_ref()
        .map_err(Clone::clone)
}

/// `ibv_wc_status_str(status)` as an owned string.
pub fn wc_status_str(lib: &Lib, status: c_uint) -> String {
    // SAFETY: ibv_wc_status_str accepts any value and returns a static string (or NULL).
    cstr_to_string(unsafe { (lib.ibv_wc_status_str)(status) })
}

/// `rdma_event_str(event)` as an owned string.
pub fn event_str(lib: &Lib, event: c_uint) -> String {
    // SAFETY: rdma_event_str accepts any value and returns a static string (or NULL).
    cstr_to_string(unsafe { (lib.rdma_event_str)(event) })
}

/// Copies a C string the library returned; NULL becomes an empty string.
pub(crate) fn cstr_to_string(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: callers pass NUL-terminated strings returned by rdma-core (static or owned by a
    // live object), copied at once.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rdma_core_installed() -> bool {
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
            .iter()
            .any(|dir| {
                Path::new(dir).join(LIBIBVERBS).exists() && Path::new(dir).join(LIBRDMACM).exists()
            })
    }

    #[test]
    fn lib_loads_with_every_symbol_resolved_or_names_libibverbs() {
        match lib() {
            Ok(lib) => {
                let addresses = lib.addresses();
                assert_eq!(addresses.len(), Lib::SYMBOLS.len());
                assert_eq!(addresses.len(), 26);
                for (name, address) in addresses {
                    assert!(!address.is_null(), "{name} resolved to NULL");
                }
                // The resolved functions are real: these two need no device.
                assert_eq!(wc_status_str(lib, IBV_WC_SUCCESS), "success");
                assert_eq!(
                    event_str(lib, RDMA_CM_EVENT_ESTABLISHED),
                    "RDMA_CM_EVENT_ESTABLISHED"
                );
                assert_eq!(
                    event_str(lib, RDMA_CM_EVENT_TIMEWAIT_EXIT),
                    "RDMA_CM_EVENT_TIMEWAIT_EXIT"
                );
            }
            Err(err) => {
                assert!(
                    !rdma_core_installed(),
                    "rdma-core is installed on this host, so lib() must load it, but: {err}"
                );
                let msg = err.to_string();
                assert!(msg.contains("libibverbs.so.1"), "{msg}");
                assert!(
                    msg.contains("libibverbs1 librdmacm1 ibverbs-providers"),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn lib_loads_on_this_host_because_rdma_core_is_installed() {
        if rdma_core_installed() {
            if let Err(err) = lib() {
                panic!("{err}");
            }
        }
    }

    #[test]
    fn a_missing_libibverbs_gives_the_install_hint() {
        let err = load("libibverbs.so.1-not-there", LIBRDMACM).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("RDMA is enabled but libibverbs.so.1-not-there could not be loaded: "),
            "{msg}"
        );
        assert!(
            msg.ends_with(
                "; install the rdma-core libraries (Debian: libibverbs1 librdmacm1 ibverbs-providers)"
            ),
            "{msg}"
        );
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn the_load_error_message_is_the_documented_one() {
        let err = LoadError::Library {
            library: LIBIBVERBS,
            dlerror: "libibverbs.so.1: cannot open shared object file: No such file or directory"
                .into(),
        };
        assert_eq!(
            err.to_string(),
            "RDMA is enabled but libibverbs.so.1 could not be loaded: libibverbs.so.1: cannot open \
             shared object file: No such file or directory; install the rdma-core libraries \
             (Debian: libibverbs1 librdmacm1 ibverbs-providers)"
        );
    }
}
