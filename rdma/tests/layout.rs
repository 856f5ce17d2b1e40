//! Proves that the `#[repr(C)]` declarations in `rdma::sys` (and `rdma::verbs::Sge`) have the
//! same size, alignment and field offsets as the C structs in the installed rdma-core headers,
//! and that every constant has the C value.
//!
//! `tests/layout/layout.c` prints those numbers as the C compiler sees them; this test compiles
//! it with `cc` (or `$CC`), runs it and compares every line with the Rust side. Both lists must
//! cover the same keys, so a field added on one side only fails the test too.

use std::collections::BTreeMap;
use std::ffi::c_uint;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use libc::{
    pthread_cond_t, pthread_mutex_t, sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage,
};
use rdma::sys::*;
use rdma::verbs::Sge;

const INSTALL: &str = "install a C compiler and the rdma-core headers \
                       (Debian: apt-get install gcc libibverbs-dev librdmacm-dev)";

/// Compiles and runs `layout.c` once per test process; returns its output as `key -> value`.
fn c_layout() -> &'static BTreeMap<String, i64> {
    static C_LAYOUT: OnceLock<BTreeMap<String, i64>> = OnceLock::new();
    C_LAYOUT.get_or_init(compile_and_run)
}

fn compile_and_run() -> BTreeMap<String, i64> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/layout/layout.c");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rdma-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("layout");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let output = Command::new(&cc)
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` ({e}); {INSTALL}"));
    assert!(
        output.status.success(),
        "compiling {} failed; {INSTALL}\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let output = Command::new(&exe).output().unwrap();
    assert!(output.status.success(), "{} failed", exe.display());
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The Rust side of every line `layout.c` prints.
fn rust_layout() -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    macro_rules! size {
        ($key:expr, $t:ty) => {
            out.push((format!("size {}", $key), size_of::<$t>() as i64));
            out.push((format!("align {}", $key), align_of::<$t>() as i64));
        };
    }
    macro_rules! off {
        ($key:expr, $t:ty, $($field:tt)+) => {
            out.push((format!("offset {}", $key), offset_of!($t, $($field)+) as i64));
        };
    }
    macro_rules! konst {
        ($($name:ident),* $(,)?) => {
            $(out.push((format!("const {}", stringify!($name)), i64::from($name)));)*
        };
    }

    for e in [
        "enum ibv_wr_opcode",
        "enum ibv_wc_status",
        "enum ibv_wc_opcode",
        "enum ibv_qp_type",
        "enum ibv_qp_state",
        "enum rdma_port_space",
        "enum rdma_cm_event_type",
    ] {
        size!(e, c_uint);
    }
    size!("pthread_mutex_t", pthread_mutex_t);
    size!("pthread_cond_t", pthread_cond_t);
    size!("sockaddr", sockaddr);
    size!("sockaddr_in", sockaddr_in);
    size!("sockaddr_in6", sockaddr_in6);
    size!("sockaddr_storage", sockaddr_storage);

    size!("ibv_context_ops", ibv_context_ops);
    off!(
        "ibv_context_ops._compat_query_device",
        ibv_context_ops,
        _compat_query_device
    );
    off!(
        "ibv_context_ops._compat_query_port",
        ibv_context_ops,
        _compat_query_port
    );
    off!(
        "ibv_context_ops._compat_alloc_pd",
        ibv_context_ops,
        _compat_alloc_pd
    );
    off!(
        "ibv_context_ops._compat_dealloc_pd",
        ibv_context_ops,
        _compat_dealloc_pd
    );
    off!(
        "ibv_context_ops._compat_reg_mr",
        ibv_context_ops,
        _compat_reg_mr
    );
    off!(
        "ibv_context_ops._compat_rereg_mr",
        ibv_context_ops,
        _compat_rereg_mr
    );
    off!(
        "ibv_context_ops._compat_dereg_mr",
        ibv_context_ops,
        _compat_dereg_mr
    );
    off!("ibv_context_ops.alloc_mw", ibv_context_ops, alloc_mw);
    off!("ibv_context_ops.bind_mw", ibv_context_ops, bind_mw);
    off!("ibv_context_ops.dealloc_mw", ibv_context_ops, dealloc_mw);
    off!(
        "ibv_context_ops._compat_create_cq",
        ibv_context_ops,
        _compat_create_cq
    );
    off!("ibv_context_ops.poll_cq", ibv_context_ops, poll_cq);
    off!(
        "ibv_context_ops.req_notify_cq",
        ibv_context_ops,
        req_notify_cq
    );
    off!(
        "ibv_context_ops._compat_cq_event",
        ibv_context_ops,
        _compat_cq_event
    );
    off!(
        "ibv_context_ops._compat_resize_cq",
        ibv_context_ops,
        _compat_resize_cq
    );
    off!(
        "ibv_context_ops._compat_destroy_cq",
        ibv_context_ops,
        _compat_destroy_cq
    );
    off!(
        "ibv_context_ops._compat_create_srq",
        ibv_context_ops,
        _compat_create_srq
    );
    off!(
        "ibv_context_ops._compat_modify_srq",
        ibv_context_ops,
        _compat_modify_srq
    );
    off!(
        "ibv_context_ops._compat_query_srq",
        ibv_context_ops,
        _compat_query_srq
    );
    off!(
        "ibv_context_ops._compat_destroy_srq",
        ibv_context_ops,
        _compat_destroy_srq
    );
    off!(
        "ibv_context_ops.post_srq_recv",
        ibv_context_ops,
        post_srq_recv
    );
    off!(
        "ibv_context_ops._compat_create_qp",
        ibv_context_ops,
        _compat_create_qp
    );
    off!(
        "ibv_context_ops._compat_query_qp",
        ibv_context_ops,
        _compat_query_qp
    );
    off!(
        "ibv_context_ops._compat_modify_qp",
        ibv_context_ops,
        _compat_modify_qp
    );
    off!(
        "ibv_context_ops._compat_destroy_qp",
        ibv_context_ops,
        _compat_destroy_qp
    );
    off!("ibv_context_ops.post_send", ibv_context_ops, post_send);
    off!("ibv_context_ops.post_recv", ibv_context_ops, post_recv);
    off!(
        "ibv_context_ops._compat_create_ah",
        ibv_context_ops,
        _compat_create_ah
    );
    off!(
        "ibv_context_ops._compat_destroy_ah",
        ibv_context_ops,
        _compat_destroy_ah
    );
    off!(
        "ibv_context_ops._compat_attach_mcast",
        ibv_context_ops,
        _compat_attach_mcast
    );
    off!(
        "ibv_context_ops._compat_detach_mcast",
        ibv_context_ops,
        _compat_detach_mcast
    );
    off!(
        "ibv_context_ops._compat_async_event",
        ibv_context_ops,
        _compat_async_event
    );

    size!("ibv_context", ibv_context);
    off!("ibv_context.device", ibv_context, device);
    off!("ibv_context.ops", ibv_context, ops);
    off!("ibv_context.ops.poll_cq", ibv_context, ops.poll_cq);
    off!(
        "ibv_context.ops.req_notify_cq",
        ibv_context,
        ops.req_notify_cq
    );
    off!("ibv_context.ops.post_send", ibv_context, ops.post_send);
    off!("ibv_context.ops.post_recv", ibv_context, ops.post_recv);
    off!("ibv_context.cmd_fd", ibv_context, cmd_fd);
    off!("ibv_context.async_fd", ibv_context, async_fd);
    off!(
        "ibv_context.num_comp_vectors",
        ibv_context,
        num_comp_vectors
    );
    off!("ibv_context.mutex", ibv_context, mutex);
    off!("ibv_context.abi_compat", ibv_context, abi_compat);

    size!("ibv_pd", ibv_pd);
    off!("ibv_pd.context", ibv_pd, context);
    off!("ibv_pd.handle", ibv_pd, handle);

    size!("ibv_comp_channel", ibv_comp_channel);
    off!("ibv_comp_channel.context", ibv_comp_channel, context);
    off!("ibv_comp_channel.fd", ibv_comp_channel, fd);
    off!("ibv_comp_channel.refcnt", ibv_comp_channel, refcnt);

    size!("ibv_cq", ibv_cq);
    off!("ibv_cq.context", ibv_cq, context);
    off!("ibv_cq.channel", ibv_cq, channel);
    off!("ibv_cq.cq_context", ibv_cq, cq_context);
    off!("ibv_cq.handle", ibv_cq, handle);
    off!("ibv_cq.cqe", ibv_cq, cqe);
    off!("ibv_cq.mutex", ibv_cq, mutex);
    off!("ibv_cq.cond", ibv_cq, cond);
    off!(
        "ibv_cq.comp_events_completed",
        ibv_cq,
        comp_events_completed
    );
    off!(
        "ibv_cq.async_events_completed",
        ibv_cq,
        async_events_completed
    );

    size!("ibv_mr", ibv_mr);
    off!("ibv_mr.context", ibv_mr, context);
    off!("ibv_mr.pd", ibv_mr, pd);
    off!("ibv_mr.addr", ibv_mr, addr);
    off!("ibv_mr.length", ibv_mr, length);
    off!("ibv_mr.handle", ibv_mr, handle);
    off!("ibv_mr.lkey", ibv_mr, lkey);
    off!("ibv_mr.rkey", ibv_mr, rkey);

    size!("ibv_qp", ibv_qp);
    off!("ibv_qp.context", ibv_qp, context);
    off!("ibv_qp.qp_context", ibv_qp, qp_context);
    off!("ibv_qp.pd", ibv_qp, pd);
    off!("ibv_qp.send_cq", ibv_qp, send_cq);
    off!("ibv_qp.recv_cq", ibv_qp, recv_cq);
    off!("ibv_qp.srq", ibv_qp, srq);
    off!("ibv_qp.handle", ibv_qp, handle);
    off!("ibv_qp.qp_num", ibv_qp, qp_num);
    off!("ibv_qp.state", ibv_qp, state);
    off!("ibv_qp.qp_type", ibv_qp, qp_type);
    off!("ibv_qp.mutex", ibv_qp, mutex);
    off!("ibv_qp.cond", ibv_qp, cond);
    off!("ibv_qp.events_completed", ibv_qp, events_completed);

    size!("ibv_qp_cap", ibv_qp_cap);
    off!("ibv_qp_cap.max_send_wr", ibv_qp_cap, max_send_wr);
    off!("ibv_qp_cap.max_recv_wr", ibv_qp_cap, max_recv_wr);
    off!("ibv_qp_cap.max_send_sge", ibv_qp_cap, max_send_sge);
    off!("ibv_qp_cap.max_recv_sge", ibv_qp_cap, max_recv_sge);
    off!("ibv_qp_cap.max_inline_data", ibv_qp_cap, max_inline_data);

    size!("ibv_qp_init_attr", ibv_qp_init_attr);
    off!("ibv_qp_init_attr.qp_context", ibv_qp_init_attr, qp_context);
    off!("ibv_qp_init_attr.send_cq", ibv_qp_init_attr, send_cq);
    off!("ibv_qp_init_attr.recv_cq", ibv_qp_init_attr, recv_cq);
    off!("ibv_qp_init_attr.srq", ibv_qp_init_attr, srq);
    off!("ibv_qp_init_attr.cap", ibv_qp_init_attr, cap);
    off!("ibv_qp_init_attr.qp_type", ibv_qp_init_attr, qp_type);
    off!("ibv_qp_init_attr.sq_sig_all", ibv_qp_init_attr, sq_sig_all);

    size!("ibv_sge", ibv_sge);
    off!("ibv_sge.addr", ibv_sge, addr);
    off!("ibv_sge.length", ibv_sge, length);
    off!("ibv_sge.lkey", ibv_sge, lkey);
    // verbs::Sge is passed to the provider as an ibv_sge list.
    size!("ibv_sge", Sge);
    off!("ibv_sge.addr", Sge, addr);
    off!("ibv_sge.length", Sge, length);
    off!("ibv_sge.lkey", Sge, lkey);

    size!("ibv_mw_bind_info", ibv_mw_bind_info);
    off!("ibv_mw_bind_info.mr", ibv_mw_bind_info, mr);
    off!("ibv_mw_bind_info.addr", ibv_mw_bind_info, addr);
    off!("ibv_mw_bind_info.length", ibv_mw_bind_info, length);
    off!(
        "ibv_mw_bind_info.mw_access_flags",
        ibv_mw_bind_info,
        mw_access_flags
    );

    size!("ibv_send_wr", ibv_send_wr);
    off!("ibv_send_wr.wr_id", ibv_send_wr, wr_id);
    off!("ibv_send_wr.next", ibv_send_wr, next);
    off!("ibv_send_wr.sg_list", ibv_send_wr, sg_list);
    off!("ibv_send_wr.num_sge", ibv_send_wr, num_sge);
    off!("ibv_send_wr.opcode", ibv_send_wr, opcode);
    off!("ibv_send_wr.send_flags", ibv_send_wr, send_flags);
    off!("ibv_send_wr.imm_data", ibv_send_wr, imm_data);
    off!("ibv_send_wr.invalidate_rkey", ibv_send_wr, imm_data);
    size!("ibv_send_wr.wr", ibv_send_wr_wr);
    off!("ibv_send_wr.wr", ibv_send_wr, wr);
    size!("ibv_send_wr.wr.rdma", ibv_send_wr_rdma);
    off!(
        "ibv_send_wr.wr.rdma.remote_addr",
        ibv_send_wr,
        wr.rdma.remote_addr
    );
    off!("ibv_send_wr.wr.rdma.rkey", ibv_send_wr, wr.rdma.rkey);
    size!("ibv_send_wr.wr.atomic", ibv_send_wr_atomic);
    off!(
        "ibv_send_wr.wr.atomic.remote_addr",
        ibv_send_wr,
        wr.atomic.remote_addr
    );
    off!(
        "ibv_send_wr.wr.atomic.compare_add",
        ibv_send_wr,
        wr.atomic.compare_add
    );
    off!("ibv_send_wr.wr.atomic.swap", ibv_send_wr, wr.atomic.swap);
    off!("ibv_send_wr.wr.atomic.rkey", ibv_send_wr, wr.atomic.rkey);
    size!("ibv_send_wr.wr.ud", ibv_send_wr_ud);
    off!("ibv_send_wr.wr.ud.ah", ibv_send_wr, wr.ud.ah);
    off!(
        "ibv_send_wr.wr.ud.remote_qpn",
        ibv_send_wr,
        wr.ud.remote_qpn
    );
    off!(
        "ibv_send_wr.wr.ud.remote_qkey",
        ibv_send_wr,
        wr.ud.remote_qkey
    );
    size!("ibv_send_wr.qp_type", ibv_send_wr_qp_type);
    off!("ibv_send_wr.qp_type", ibv_send_wr, qp_type);
    off!(
        "ibv_send_wr.qp_type.xrc.remote_srqn",
        ibv_send_wr,
        qp_type.xrc.remote_srqn
    );
    size!("ibv_send_wr.bind_mw", ibv_send_wr_bind_mw);
    off!("ibv_send_wr.bind_mw", ibv_send_wr, bind_mw_or_tso.bind_mw);
    off!(
        "ibv_send_wr.bind_mw.mw",
        ibv_send_wr,
        bind_mw_or_tso.bind_mw.mw
    );
    off!(
        "ibv_send_wr.bind_mw.rkey",
        ibv_send_wr,
        bind_mw_or_tso.bind_mw.rkey
    );
    off!(
        "ibv_send_wr.bind_mw.bind_info",
        ibv_send_wr,
        bind_mw_or_tso.bind_mw.bind_info
    );
    size!("ibv_send_wr.tso", ibv_send_wr_tso);
    off!("ibv_send_wr.tso", ibv_send_wr, bind_mw_or_tso.tso);
    off!("ibv_send_wr.tso.hdr", ibv_send_wr, bind_mw_or_tso.tso.hdr);
    off!(
        "ibv_send_wr.tso.hdr_sz",
        ibv_send_wr,
        bind_mw_or_tso.tso.hdr_sz
    );
    off!("ibv_send_wr.tso.mss", ibv_send_wr, bind_mw_or_tso.tso.mss);

    size!("ibv_recv_wr", ibv_recv_wr);
    off!("ibv_recv_wr.wr_id", ibv_recv_wr, wr_id);
    off!("ibv_recv_wr.next", ibv_recv_wr, next);
    off!("ibv_recv_wr.sg_list", ibv_recv_wr, sg_list);
    off!("ibv_recv_wr.num_sge", ibv_recv_wr, num_sge);

    size!("ibv_wc", ibv_wc);
    off!("ibv_wc.wr_id", ibv_wc, wr_id);
    off!("ibv_wc.status", ibv_wc, status);
    off!("ibv_wc.opcode", ibv_wc, opcode);
    off!("ibv_wc.vendor_err", ibv_wc, vendor_err);
    off!("ibv_wc.byte_len", ibv_wc, byte_len);
    off!("ibv_wc.imm_data", ibv_wc, imm_data);
    off!("ibv_wc.invalidated_rkey", ibv_wc, imm_data);
    off!("ibv_wc.qp_num", ibv_wc, qp_num);
    off!("ibv_wc.src_qp", ibv_wc, src_qp);
    off!("ibv_wc.wc_flags", ibv_wc, wc_flags);
    off!("ibv_wc.pkey_index", ibv_wc, pkey_index);
    off!("ibv_wc.slid", ibv_wc, slid);
    off!("ibv_wc.sl", ibv_wc, sl);
    off!("ibv_wc.dlid_path_bits", ibv_wc, dlid_path_bits);

    size!("ibv_gid", ibv_gid);
    off!("ibv_gid.raw", ibv_gid, raw);
    off!(
        "ibv_gid.global.subnet_prefix",
        ibv_gid,
        global.subnet_prefix
    );
    off!("ibv_gid.global.interface_id", ibv_gid, global.interface_id);

    size!("ibv_global_route", ibv_global_route);
    off!("ibv_global_route.dgid", ibv_global_route, dgid);
    off!("ibv_global_route.flow_label", ibv_global_route, flow_label);
    off!("ibv_global_route.sgid_index", ibv_global_route, sgid_index);
    off!("ibv_global_route.hop_limit", ibv_global_route, hop_limit);
    off!(
        "ibv_global_route.traffic_class",
        ibv_global_route,
        traffic_class
    );

    size!("ibv_ah_attr", ibv_ah_attr);
    off!("ibv_ah_attr.grh", ibv_ah_attr, grh);
    off!("ibv_ah_attr.dlid", ibv_ah_attr, dlid);
    off!("ibv_ah_attr.sl", ibv_ah_attr, sl);
    off!("ibv_ah_attr.src_path_bits", ibv_ah_attr, src_path_bits);
    off!("ibv_ah_attr.static_rate", ibv_ah_attr, static_rate);
    off!("ibv_ah_attr.is_global", ibv_ah_attr, is_global);
    off!("ibv_ah_attr.port_num", ibv_ah_attr, port_num);

    size!("rdma_event_channel", rdma_event_channel);
    off!("rdma_event_channel.fd", rdma_event_channel, fd);

    size!("rdma_ib_addr", rdma_ib_addr);
    off!("rdma_ib_addr.sgid", rdma_ib_addr, sgid);
    off!("rdma_ib_addr.dgid", rdma_ib_addr, dgid);
    off!("rdma_ib_addr.pkey", rdma_ib_addr, pkey);

    size!("rdma_addr", rdma_addr);
    size!("rdma_addr.src_storage", rdma_sockaddr);
    off!("rdma_addr.src_addr", rdma_addr, src.addr);
    off!("rdma_addr.src_sin", rdma_addr, src.sin);
    off!("rdma_addr.src_sin6", rdma_addr, src.sin6);
    off!("rdma_addr.src_storage", rdma_addr, src.storage);
    size!("rdma_addr.dst_storage", rdma_sockaddr);
    off!("rdma_addr.dst_addr", rdma_addr, dst.addr);
    off!("rdma_addr.dst_sin", rdma_addr, dst.sin);
    off!("rdma_addr.dst_sin6", rdma_addr, dst.sin6);
    off!("rdma_addr.dst_storage", rdma_addr, dst.storage);
    size!("rdma_addr.addr", rdma_addr_addr);
    off!("rdma_addr.addr.ibaddr", rdma_addr, addr.ibaddr);

    size!("rdma_route", rdma_route);
    off!("rdma_route.addr", rdma_route, addr);
    off!("rdma_route.path_rec", rdma_route, path_rec);
    off!("rdma_route.num_paths", rdma_route, num_paths);

    size!("rdma_cm_id", rdma_cm_id);
    off!("rdma_cm_id.verbs", rdma_cm_id, verbs);
    off!("rdma_cm_id.channel", rdma_cm_id, channel);
    off!("rdma_cm_id.context", rdma_cm_id, context);
    off!("rdma_cm_id.qp", rdma_cm_id, qp);
    off!("rdma_cm_id.route", rdma_cm_id, route);
    off!("rdma_cm_id.route.addr.src_addr", rdma_cm_id, route.addr.src);
    off!("rdma_cm_id.route.addr.dst_addr", rdma_cm_id, route.addr.dst);
    off!("rdma_cm_id.ps", rdma_cm_id, ps);
    off!("rdma_cm_id.port_num", rdma_cm_id, port_num);
    off!("rdma_cm_id.event", rdma_cm_id, event);
    off!("rdma_cm_id.send_cq_channel", rdma_cm_id, send_cq_channel);
    off!("rdma_cm_id.send_cq", rdma_cm_id, send_cq);
    off!("rdma_cm_id.recv_cq_channel", rdma_cm_id, recv_cq_channel);
    off!("rdma_cm_id.recv_cq", rdma_cm_id, recv_cq);
    off!("rdma_cm_id.srq", rdma_cm_id, srq);
    off!("rdma_cm_id.pd", rdma_cm_id, pd);
    off!("rdma_cm_id.qp_type", rdma_cm_id, qp_type);

    size!("rdma_conn_param", rdma_conn_param);
    off!(
        "rdma_conn_param.private_data",
        rdma_conn_param,
        private_data
    );
    off!(
        "rdma_conn_param.private_data_len",
        rdma_conn_param,
        private_data_len
    );
    off!(
        "rdma_conn_param.responder_resources",
        rdma_conn_param,
        responder_resources
    );
    off!(
        "rdma_conn_param.initiator_depth",
        rdma_conn_param,
        initiator_depth
    );
    off!(
        "rdma_conn_param.flow_control",
        rdma_conn_param,
        flow_control
    );
    off!("rdma_conn_param.retry_count", rdma_conn_param, retry_count);
    off!(
        "rdma_conn_param.rnr_retry_count",
        rdma_conn_param,
        rnr_retry_count
    );
    off!("rdma_conn_param.srq", rdma_conn_param, srq);
    off!("rdma_conn_param.qp_num", rdma_conn_param, qp_num);

    size!("rdma_ud_param", rdma_ud_param);
    off!("rdma_ud_param.private_data", rdma_ud_param, private_data);
    off!(
        "rdma_ud_param.private_data_len",
        rdma_ud_param,
        private_data_len
    );
    off!("rdma_ud_param.ah_attr", rdma_ud_param, ah_attr);
    off!("rdma_ud_param.qp_num", rdma_ud_param, qp_num);
    off!("rdma_ud_param.qkey", rdma_ud_param, qkey);

    size!("rdma_cm_event", rdma_cm_event);
    off!("rdma_cm_event.id", rdma_cm_event, id);
    off!("rdma_cm_event.listen_id", rdma_cm_event, listen_id);
    off!("rdma_cm_event.event", rdma_cm_event, event);
    off!("rdma_cm_event.status", rdma_cm_event, status);
    size!("rdma_cm_event.param", rdma_cm_event_param);
    off!("rdma_cm_event.param", rdma_cm_event, param);
    off!(
        "rdma_cm_event.param.conn.private_data",
        rdma_cm_event,
        param.conn.private_data
    );
    off!(
        "rdma_cm_event.param.conn.private_data_len",
        rdma_cm_event,
        param.conn.private_data_len
    );
    off!(
        "rdma_cm_event.param.conn.qp_num",
        rdma_cm_event,
        param.conn.qp_num
    );
    off!("rdma_cm_event.param.ud.qkey", rdma_cm_event, param.ud.qkey);

    konst!(
        IBV_WR_RDMA_WRITE,
        IBV_WR_SEND,
        IBV_WR_RDMA_READ,
        IBV_SEND_SIGNALED,
        IBV_ACCESS_LOCAL_WRITE,
        IBV_ACCESS_REMOTE_WRITE,
        IBV_ACCESS_REMOTE_READ,
        IBV_QPT_RC,
        IBV_WC_SUCCESS,
        IBV_WC_SEND,
        IBV_WC_RDMA_WRITE,
        IBV_WC_RDMA_READ,
        IBV_WC_RECV,
        RDMA_PS_TCP,
        RDMA_CM_EVENT_ADDR_RESOLVED,
        RDMA_CM_EVENT_ADDR_ERROR,
        RDMA_CM_EVENT_ROUTE_RESOLVED,
        RDMA_CM_EVENT_ROUTE_ERROR,
        RDMA_CM_EVENT_CONNECT_REQUEST,
        RDMA_CM_EVENT_CONNECT_RESPONSE,
        RDMA_CM_EVENT_CONNECT_ERROR,
        RDMA_CM_EVENT_UNREACHABLE,
        RDMA_CM_EVENT_REJECTED,
        RDMA_CM_EVENT_ESTABLISHED,
        RDMA_CM_EVENT_DISCONNECTED,
        RDMA_CM_EVENT_DEVICE_REMOVAL,
        RDMA_CM_EVENT_MULTICAST_JOIN,
        RDMA_CM_EVENT_MULTICAST_ERROR,
        RDMA_CM_EVENT_ADDR_CHANGE,
        RDMA_CM_EVENT_TIMEWAIT_EXIT,
    );
    out
}

#[test]
fn every_sys_struct_and_constant_matches_the_c_headers() {
    let c = c_layout();
    let rust = rust_layout();
    let mut problems = Vec::new();
    for (key, value) in &rust {
        match c.get(key) {
            None => problems.push(format!(
                "{key}: checked in Rust but not printed by layout.c"
            )),
            Some(c_value) if c_value != value => {
                problems.push(format!("{key}: C {c_value}, Rust {value}"))
            }
            Some(_) => {}
        }
    }
    for key in c.keys() {
        if !rust.iter().any(|(k, _)| k == key) {
            problems.push(format!(
                "{key}: printed by layout.c but not checked in Rust"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layout mismatches:\n{}",
        problems.join("\n")
    );
    // Guard against a silently truncated C output.
    assert!(c.len() > 250, "only {} lines from layout.c", c.len());
}

#[test]
fn ibv_send_wr_matches_the_c_layout() {
    let c = c_layout();
    assert_eq!(c["size ibv_send_wr"], size_of::<ibv_send_wr>() as i64);
    assert_eq!(
        c["offset ibv_send_wr.wr.rdma.remote_addr"],
        offset_of!(ibv_send_wr, wr.rdma.remote_addr) as i64
    );
    assert_eq!(
        c["offset ibv_send_wr.wr.rdma.rkey"],
        offset_of!(ibv_send_wr, wr.rdma.rkey) as i64
    );
}

#[test]
fn the_inline_verbs_find_their_ops_at_the_c_offsets() {
    let c = c_layout();
    for (key, rust) in [
        (
            "offset ibv_context.ops.post_send",
            offset_of!(ibv_context, ops.post_send),
        ),
        (
            "offset ibv_context.ops.post_recv",
            offset_of!(ibv_context, ops.post_recv),
        ),
        (
            "offset ibv_context.ops.poll_cq",
            offset_of!(ibv_context, ops.poll_cq),
        ),
        (
            "offset ibv_context.ops.req_notify_cq",
            offset_of!(ibv_context, ops.req_notify_cq),
        ),
    ] {
        assert_eq!(c[key], rust as i64, "{key}");
    }
}
