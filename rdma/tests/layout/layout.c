/*
 * Prints the size, alignment and field offsets of every rdma-core struct that
 * rdma/src/sys.rs declares, and the value of every constant it defines, as seen
 * by the C compiler through the real headers. rdma/tests/layout.rs compiles this
 * file, runs it and compares each line with the Rust declarations.
 *
 * Output lines: "size KEY N", "align KEY N", "offset TYPE.FIELD N", "const NAME N".
 */
#include <stddef.h>
#include <stdio.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define MEMBER(T, F) __typeof__(((T *)0)->F)
#define SIZE(KEY, T) printf("size %s %zu\nalign %s %zu\n", KEY, sizeof(T), KEY, _Alignof(T))
#define STRUCT(T) SIZE(#T, struct T)
#define UNION(T) SIZE(#T, union T)
#define FIELD_SIZE(T, F) SIZE(#T "." #F, MEMBER(struct T, F))
#define OFF(T, F) printf("offset %s.%s %zu\n", #T, #F, offsetof(struct T, F))
#define UOFF(T, F) printf("offset %s.%s %zu\n", #T, #F, offsetof(union T, F))
#define CONST(C) printf("const %s %lld\n", #C, (long long)(C))

int main(void)
{
	/* enums stored in struct fields are declared as c_uint in Rust */
	SIZE("enum ibv_wr_opcode", enum ibv_wr_opcode);
	SIZE("enum ibv_wc_status", enum ibv_wc_status);
	SIZE("enum ibv_wc_opcode", enum ibv_wc_opcode);
	SIZE("enum ibv_qp_type", enum ibv_qp_type);
	SIZE("enum ibv_qp_state", enum ibv_qp_state);
	SIZE("enum rdma_port_space", enum rdma_port_space);
	SIZE("enum rdma_cm_event_type", enum rdma_cm_event_type);

	/* libc types embedded in rdma-core structs */
	SIZE("pthread_mutex_t", pthread_mutex_t);
	SIZE("pthread_cond_t", pthread_cond_t);
	STRUCT(sockaddr);
	STRUCT(sockaddr_in);
	STRUCT(sockaddr_in6);
	STRUCT(sockaddr_storage);

	STRUCT(ibv_context_ops);
	OFF(ibv_context_ops, _compat_query_device);
	OFF(ibv_context_ops, _compat_query_port);
	OFF(ibv_context_ops, _compat_alloc_pd);
	OFF(ibv_context_ops, _compat_dealloc_pd);
	OFF(ibv_context_ops, _compat_reg_mr);
	OFF(ibv_context_ops, _compat_rereg_mr);
	OFF(ibv_context_ops, _compat_dereg_mr);
	OFF(ibv_context_ops, alloc_mw);
	OFF(ibv_context_ops, bind_mw);
	OFF(ibv_context_ops, dealloc_mw);
	OFF(ibv_context_ops, _compat_create_cq);
	OFF(ibv_context_ops, poll_cq);
	OFF(ibv_context_ops, req_notify_cq);
	OFF(ibv_context_ops, _compat_cq_event);
	OFF(ibv_context_ops, _compat_resize_cq);
	OFF(ibv_context_ops, _compat_destroy_cq);
	OFF(ibv_context_ops, _compat_create_srq);
	OFF(ibv_context_ops, _compat_modify_srq);
	OFF(ibv_context_ops, _compat_query_srq);
	OFF(ibv_context_ops, _compat_destroy_srq);
	OFF(ibv_context_ops, post_srq_recv);
	OFF(ibv_context_ops, _compat_create_qp);
	OFF(ibv_context_ops, _compat_query_qp);
	OFF(ibv_context_ops, _compat_modify_qp);
	OFF(ibv_context_ops, _compat_destroy_qp);
	OFF(ibv_context_ops, post_send);
	OFF(ibv_context_ops, post_recv);
	OFF(ibv_context_ops, _compat_create_ah);
	OFF(ibv_context_ops, _compat_destroy_ah);
	OFF(ibv_context_ops, _compat_attach_mcast);
	OFF(ibv_context_ops, _compat_detach_mcast);
	OFF(ibv_context_ops, _compat_async_event);

	STRUCT(ibv_context);
	OFF(ibv_context, device);
	OFF(ibv_context, ops);
	OFF(ibv_context, ops.poll_cq);
	OFF(ibv_context, ops.req_notify_cq);
	OFF(ibv_context, ops.post_send);
	OFF(ibv_context, ops.post_recv);
	OFF(ibv_context, cmd_fd);
	OFF(ibv_context, async_fd);
	OFF(ibv_context, num_comp_vectors);
	OFF(ibv_context, mutex);
	OFF(ibv_context, abi_compat);

	STRUCT(ibv_pd);
	OFF(ibv_pd, context);
	OFF(ibv_pd, handle);

	STRUCT(ibv_comp_channel);
	OFF(ibv_comp_channel, context);
	OFF(ibv_comp_channel, fd);
	OFF(ibv_comp_channel, refcnt);

	STRUCT(ibv_cq);
	OFF(ibv_cq, context);
	OFF(ibv_cq, channel);
	OFF(ibv_cq, cq_context);
	OFF(ibv_cq, handle);
	OFF(ibv_cq, cqe);
	OFF(ibv_cq, mutex);
	OFF(ibv_cq, cond);
	OFF(ibv_cq, comp_events_completed);
	OFF(ibv_cq, async_events_completed);

	STRUCT(ibv_mr);
	OFF(ibv_mr, context);
	OFF(ibv_mr, pd);
	OFF(ibv_mr, addr);
	OFF(ibv_mr, length);
	OFF(ibv_mr, handle);
	OFF(ibv_mr, lkey);
	OFF(ibv_mr, rkey);

	STRUCT(ibv_qp);
	OFF(ibv_qp, context);
	OFF(ibv_qp, qp_context);
	OFF(ibv_qp, pd);
	OFF(ibv_qp, send_cq);
	OFF(ibv_qp, recv_cq);
	OFF(ibv_qp, srq);
	OFF(ibv_qp, handle);
	OFF(ibv_qp, qp_num);
	OFF(ibv_qp, state);
	OFF(ibv_qp, qp_type);
	OFF(ibv_qp, mutex);
	OFF(ibv_qp, cond);
	OFF(ibv_qp, events_completed);

	STRUCT(ibv_qp_cap);
	OFF(ibv_qp_cap, max_send_wr);
	OFF(ibv_qp_cap, max_recv_wr);
	OFF(ibv_qp_cap, max_send_sge);
	OFF(ibv_qp_cap, max_recv_sge);
	OFF(ibv_qp_cap, max_inline_data);

	STRUCT(ibv_qp_init_attr);
	OFF(ibv_qp_init_attr, qp_context);
	OFF(ibv_qp_init_attr, send_cq);
	OFF(ibv_qp_init_attr, recv_cq);
	OFF(ibv_qp_init_attr, srq);
	OFF(ibv_qp_init_attr, cap);
	OFF(ibv_qp_init_attr, qp_type);
	OFF(ibv_qp_init_attr, sq_sig_all);

	STRUCT(ibv_sge);
	OFF(ibv_sge, addr);
	OFF(ibv_sge, length);
	OFF(ibv_sge, lkey);

	STRUCT(ibv_mw_bind_info);
	OFF(ibv_mw_bind_info, mr);
	OFF(ibv_mw_bind_info, addr);
	OFF(ibv_mw_bind_info, length);
	OFF(ibv_mw_bind_info, mw_access_flags);

	STRUCT(ibv_send_wr);
	OFF(ibv_send_wr, wr_id);
	OFF(ibv_send_wr, next);
	OFF(ibv_send_wr, sg_list);
	OFF(ibv_send_wr, num_sge);
	OFF(ibv_send_wr, opcode);
	OFF(ibv_send_wr, send_flags);
	OFF(ibv_send_wr, imm_data);
	OFF(ibv_send_wr, invalidate_rkey);
	FIELD_SIZE(ibv_send_wr, wr);
	OFF(ibv_send_wr, wr);
	FIELD_SIZE(ibv_send_wr, wr.rdma);
	OFF(ibv_send_wr, wr.rdma.remote_addr);
	OFF(ibv_send_wr, wr.rdma.rkey);
	FIELD_SIZE(ibv_send_wr, wr.atomic);
	OFF(ibv_send_wr, wr.atomic.remote_addr);
	OFF(ibv_send_wr, wr.atomic.compare_add);
	OFF(ibv_send_wr, wr.atomic.swap);
	OFF(ibv_send_wr, wr.atomic.rkey);
	FIELD_SIZE(ibv_send_wr, wr.ud);
	OFF(ibv_send_wr, wr.ud.ah);
	OFF(ibv_send_wr, wr.ud.remote_qpn);
	OFF(ibv_send_wr, wr.ud.remote_qkey);
	FIELD_SIZE(ibv_send_wr, qp_type);
	OFF(ibv_send_wr, qp_type);
	OFF(ibv_send_wr, qp_type.xrc.remote_srqn);
	FIELD_SIZE(ibv_send_wr, bind_mw);
	OFF(ibv_send_wr, bind_mw);
	OFF(ibv_send_wr, bind_mw.mw);
	OFF(ibv_send_wr, bind_mw.rkey);
	OFF(ibv_send_wr, bind_mw.bind_info);
	FIELD_SIZE(ibv_send_wr, tso);
	OFF(ibv_send_wr, tso);
	OFF(ibv_send_wr, tso.hdr);
	OFF(ibv_send_wr, tso.hdr_sz);
	OFF(ibv_send_wr, tso.mss);

	STRUCT(ibv_recv_wr);
	OFF(ibv_recv_wr, wr_id);
	OFF(ibv_recv_wr, next);
	OFF(ibv_recv_wr, sg_list);
	OFF(ibv_recv_wr, num_sge);

	STRUCT(ibv_wc);
	OFF(ibv_wc, wr_id);
	OFF(ibv_wc, status);
	OFF(ibv_wc, opcode);
	OFF(ibv_wc, vendor_err);
	OFF(ibv_wc, byte_len);
	OFF(ibv_wc, imm_data);
	OFF(ibv_wc, invalidated_rkey);
	OFF(ibv_wc, qp_num);
	OFF(ibv_wc, src_qp);
	OFF(ibv_wc, wc_flags);
	OFF(ibv_wc, pkey_index);
	OFF(ibv_wc, slid);
	OFF(ibv_wc, sl);
	OFF(ibv_wc, dlid_path_bits);

	UNION(ibv_gid);
	UOFF(ibv_gid, raw);
	UOFF(ibv_gid, global.subnet_prefix);
	UOFF(ibv_gid, global.interface_id);

	STRUCT(ibv_global_route);
	OFF(ibv_global_route, dgid);
	OFF(ibv_global_route, flow_label);
	OFF(ibv_global_route, sgid_index);
	OFF(ibv_global_route, hop_limit);
	OFF(ibv_global_route, traffic_class);

	STRUCT(ibv_ah_attr);
	OFF(ibv_ah_attr, grh);
	OFF(ibv_ah_attr, dlid);
	OFF(ibv_ah_attr, sl);
	OFF(ibv_ah_attr, src_path_bits);
	OFF(ibv_ah_attr, static_rate);
	OFF(ibv_ah_attr, is_global);
	OFF(ibv_ah_attr, port_num);

	STRUCT(rdma_event_channel);
	OFF(rdma_event_channel, fd);

	STRUCT(rdma_ib_addr);
	OFF(rdma_ib_addr, sgid);
	OFF(rdma_ib_addr, dgid);
	OFF(rdma_ib_addr, pkey);

	STRUCT(rdma_addr);
	FIELD_SIZE(rdma_addr, src_storage);
	OFF(rdma_addr, src_addr);
	OFF(rdma_addr, src_sin);
	OFF(rdma_addr, src_sin6);
	OFF(rdma_addr, src_storage);
	FIELD_SIZE(rdma_addr, dst_storage);
	OFF(rdma_addr, dst_addr);
	OFF(rdma_addr, dst_sin);
	OFF(rdma_addr, dst_sin6);
	OFF(rdma_addr, dst_storage);
	FIELD_SIZE(rdma_addr, addr);
	OFF(rdma_addr, addr.ibaddr);

	STRUCT(rdma_route);
	OFF(rdma_route, addr);
	OFF(rdma_route, path_rec);
	OFF(rdma_route, num_paths);

	STRUCT(rdma_cm_id);
	OFF(rdma_cm_id, verbs);
	OFF(rdma_cm_id, channel);
	OFF(rdma_cm_id, context);
	OFF(rdma_cm_id, qp);
	OFF(rdma_cm_id, route);
	OFF(rdma_cm_id, route.addr.src_addr);
	OFF(rdma_cm_id, route.addr.dst_addr);
	OFF(rdma_cm_id, ps);
	OFF(rdma_cm_id, port_num);
	OFF(rdma_cm_id, event);
	OFF(rdma_cm_id, send_cq_channel);
	OFF(rdma_cm_id, send_cq);
	OFF(rdma_cm_id, recv_cq_channel);
	OFF(rdma_cm_id, recv_cq);
	OFF(rdma_cm_id, srq);
	OFF(rdma_cm_id, pd);
	OFF(rdma_cm_id, qp_type);

	STRUCT(rdma_conn_param);
	OFF(rdma_conn_param, private_data);
	OFF(rdma_conn_param, private_data_len);
	OFF(rdma_conn_param, responder_resources);
	OFF(rdma_conn_param, initiator_depth);
	OFF(rdma_conn_param, flow_control);
	OFF(rdma_conn_param, retry_count);
	OFF(rdma_conn_param, rnr_retry_count);
	OFF(rdma_conn_param, srq);
	OFF(rdma_conn_param, qp_num);

	STRUCT(rdma_ud_param);
	OFF(rdma_ud_param, private_data);
	OFF(rdma_ud_param, private_data_len);
	OFF(rdma_ud_param, ah_attr);
	OFF(rdma_ud_param, qp_num);
	OFF(rdma_ud_param, qkey);

	STRUCT(rdma_cm_event);
	OFF(rdma_cm_event, id);
	OFF(rdma_cm_event, listen_id);
	OFF(rdma_cm_event, event);
	OFF(rdma_cm_event, status);
	FIELD_SIZE(rdma_cm_event, param);
	OFF(rdma_cm_event, param);
	OFF(rdma_cm_event, param.conn.private_data);
	OFF(rdma_cm_event, param.conn.private_data_len);
	OFF(rdma_cm_event, param.conn.qp_num);
	OFF(rdma_cm_event, param.ud.qkey);

	CONST(IBV_WR_RDMA_WRITE);
	CONST(IBV_WR_SEND);
	CONST(IBV_WR_RDMA_READ);
	CONST(IBV_SEND_SIGNALED);
	CONST(IBV_ACCESS_LOCAL_WRITE);
	CONST(IBV_ACCESS_REMOTE_WRITE);
	CONST(IBV_ACCESS_REMOTE_READ);
	CONST(IBV_QPT_RC);
	CONST(IBV_WC_SUCCESS);
	CONST(IBV_WC_SEND);
	CONST(IBV_WC_RDMA_WRITE);
	CONST(IBV_WC_RDMA_READ);
	CONST(IBV_WC_RECV);
	CONST(RDMA_PS_TCP);
	CONST(RDMA_CM_EVENT_ADDR_RESOLVED);
	CONST(RDMA_CM_EVENT_ADDR_ERROR);
	CONST(RDMA_CM_EVENT_ROUTE_RESOLVED);
	CONST(RDMA_CM_EVENT_ROUTE_ERROR);
	CONST(RDMA_CM_EVENT_CONNECT_REQUEST);
	CONST(RDMA_CM_EVENT_CONNECT_RESPONSE);
	CONST(RDMA_CM_EVENT_CONNECT_ERROR);
	CONST(RDMA_CM_EVENT_UNREACHABLE);
	CONST(RDMA_CM_EVENT_REJECTED);
	CONST(RDMA_CM_EVENT_ESTABLISHED);
	CONST(RDMA_CM_EVENT_DISCONNECTED);
	CONST(RDMA_CM_EVENT_DEVICE_REMOVAL);
	CONST(RDMA_CM_EVENT_MULTICAST_JOIN);
	CONST(RDMA_CM_EVENT_MULTICAST_ERROR);
	CONST(RDMA_CM_EVENT_ADDR_CHANGE);
	CONST(RDMA_CM_EVENT_TIMEWAIT_EXIT);
	return 0;
}
