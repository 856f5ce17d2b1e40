//! A small safe wrapper over [`crate::sys`]: the connection manager (event channel, ids,
//! events), protection domains, registered memory, completion queues and queue pairs, as the
//! RPC-over-RDMA transport uses them (passive side only: listen, accept, post, poll).
//!
//! # Destruction order
//!
//! rdma-core objects reference each other, and destroying one that is still referenced fails
//! (`EBUSY`) or, for the event channel, frees memory still in use. The owner must drop:
//!
//! 1. every [`CmId`] (its `Drop` destroys the QP first, then the id),
//! 2. then the [`Cq`] the QP used (destroying a CQ a QP still uses fails with `EBUSY`, and the
//!    CQ and its channel are then leaked),
//! 3. then the [`Region`]s and the [`Pd`] (a `Region` keeps its `Pd` alive through an `Arc`;
//!    the `Pd` must also outlive the QPs created on it, or `ibv_dealloc_pd` fails and leaks),
//! 4. and the [`EventChannel`] last. Ids created by [`EventChannel::listen`] keep the channel
//!    alive themselves; ids from [`CmId::from_raw`] rely on the caller (see its safety section).
//!
//! A failed destroy is logged and the object leaked; memory that the HCA may still access is
//! never freed.
//!
//! # Errors
//!
//! Set-up calls return `io::Error`s whose message names the failing call. The post calls
//! return the bare errno (`io::Error::from_raw_os_error`) so the caller can test for `ENOMEM`
//! (send or receive queue full). If rdma-core is not installed, every constructor fails with
//! the [`sys::LoadError`] message (kind `Unsupported`).

use std::alloc::{self, Layout};
use std::ffi::{c_int, c_void};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;
use std::sync::Arc;

use crate::sys;

/// The errno of the last failed call, with `what` in front. `what` is formatted only after
/// errno has been read, so formatting cannot clobber it.
fn last_error(what: fmt::Arguments<'_>) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// An errno returned as a value (the `ibv_destroy_*`/`ibv_post_*` convention), with `what`.
fn errno_error(what: &str, errno: c_int) -> io::Error {
    let err = io::Error::from_raw_os_error(errno.abs());
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Sets `O_NONBLOCK` on `fd`.
fn set_nonblocking(fd: RawFd, what: &str) -> io::Result<()> {
    // SAFETY: F_GETFL on an fd we own has no memory effects.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(last_error(format_args!("{what}")));
    }
    // SAFETY: F_SETFL on an fd we own has no memory effects.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(last_error(format_args!("{what}")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Event channel and CM events
// ---------------------------------------------------------------------------------------------

/// Owns the `rdma_event_channel`; shared by the [`EventChannel`] and the ids made by
/// [`EventChannel::listen`], so it is destroyed after them.
struct ChannelInner {
    channel: *mut sys::rdma_event_channel,
    lib: &'static sys::Lib,
}

// SAFETY: the channel is a heap object of librdmacm wrapping an fd; librdmacm does not tie it to
// a thread, and rdma_get_cm_event may be called from any thread.
unsafe impl Send for ChannelInner {}
// SAFETY: the only operation through `&ChannelInner` is rdma_get_cm_event, a read(2) on the fd
// into a fresh allocation, which is safe to run concurrently.
unsafe impl Sync for ChannelInner {}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        // SAFETY: we own the channel; every id created on it that we know of holds an Arc to
        // this and is therefore gone, and every event we fetched was acked in `next_event`.
        unsafe { (self.lib.rdma_destroy_event_channel)(self.channel) };
    }
}

/// An RDMA CM event channel (`rdma_event_channel`), whose fd is nonblocking: poll it for
/// readability, then drain it with [`EventChannel::next_event`].
///
/// Must be dropped after every [`CmId`] obtained from [`CmId::from_raw`] on its events.
pub struct EventChannel {
    inner: Arc<ChannelInner>,
}

impl EventChannel {
    /// Creates the channel (this opens `/dev/infiniband/rdma_cm`).
    pub fn new() -> io::Result<EventChannel> {
        let lib = sys::lib()?;
        // SAFETY: no arguments; returns NULL with errno set on failure.
        let channel = unsafe { (lib.rdma_create_event_channel)() };
        if channel.is_null() {
            let err = io::Error::last_os_error();
            let hint = match err.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENOENT) => {
                    "; is rdma_ucm loaded? (it needs an RDMA device and /dev/infiniband/rdma_cm)"
                }
                _ => "",
            };
            return Err(io::Error::new(
                err.kind(),
                format!("rdma_create_event_channel: {err}{hint}"),
            ));
        }
        let inner = Arc::new(ChannelInner { channel, lib });
        // SAFETY: `channel` is the live channel we just created.
        let fd = unsafe { (*channel).fd };
        set_nonblocking(fd, "rdma event channel: fcntl(O_NONBLOCK)")?;
        Ok(EventChannel { inner })
    }

    /// The channel's fd (nonblocking), to register with a poller.
    pub fn fd(&self) -> RawFd {
        // SAFETY: the channel lives as long as `self.inner`.
        unsafe { (*self.inner.channel).fd }
    }

    /// Creates an id on this channel (`RDMA_PS_TCP`), binds it to `addr` (IPv4 or IPv6; an
    /// unspecified address listens on every RDMA device) and listens with `backlog`.
    /// Takes ownership of the new id of a [`CmEventKind::ConnectRequest`] from this channel;
    /// the id keeps the channel alive (librdmacm writes to it when the id is destroyed).
    ///
    /// # Safety
    /// `id` must be the new id of a connect request read from this channel, owned by nothing
    /// else (it is destroyed on drop).
    pub unsafe fn adopt(&self, id: *mut sys::rdma_cm_id) -> CmId {
        CmId {
            id,
            lib: self.inner.lib,
            _channel: Some(Arc::clone(&self.inner)),
        }
    }

    pub fn listen(&self, addr: SocketAddr, backlog: i32) -> io::Result<CmId> {
        let lib = self.inner.lib;
        let mut raw: *mut sys::rdma_cm_id = ptr::null_mut();
        // SAFETY: live channel; `raw` is a valid out-pointer; no user context.
        let rc = unsafe {
            (lib.rdma_create_id)(
                self.inner.channel,
                &mut raw,
                ptr::null_mut(),
                sys::RDMA_PS_TCP,
            )
        };
        if rc != 0 {
            return Err(last_error(format_args!("rdma_create_id")));
        }
        // From here on, `id`'s Drop destroys the id on every error path.
        let id = CmId {
            id: raw,
            lib,
            _channel: Some(Arc::clone(&self.inner)),
        };
        let mut storage = socket_addr_to_c(addr);
        // SAFETY: live id; `storage` holds a sockaddr_in or sockaddr_in6 whose family matches.
        let rc = unsafe { (lib.rdma_bind_addr)(raw, ptr::addr_of_mut!(storage).cast()) };
        if rc != 0 {
            return Err(last_error(format_args!("rdma_bind_addr({addr})")));
        }
        // SAFETY: live, bound id.
        if unsafe { (lib.rdma_listen)(raw, backlog) } != 0 {
            return Err(last_error(format_args!("rdma_listen({addr})")));
        }
        Ok(id)
    }

    /// Fetches the next event, copies what the caller needs and acks it. Returns `Ok(None)`
    /// when no event is pending.
    ///
    /// For [`CmEventKind::ConnectRequest`], `id` is a new id that the caller now owns: wrap it
    /// with [`CmId::from_raw`], then accept, reject or drop it.
    pub fn next_event(&self) -> io::Result<Option<CmEvent>> {
        let lib = self.inner.lib;
        let mut event: *mut sys::rdma_cm_event = ptr::null_mut();
        // SAFETY: live channel; `event` is a valid out-pointer.
        if unsafe { (lib.rdma_get_cm_event)(self.inner.channel, &mut event) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(io::Error::new(
                err.kind(),
                format!("rdma_get_cm_event: {err}"),
            ));
        }
        // SAFETY: rdma_get_cm_event succeeded, so `event` points at a live event until acked.
        let ev = unsafe { &*event };
        let private_data = if matches!(
            ev.event,
            sys::RDMA_CM_EVENT_CONNECT_REQUEST
                | sys::RDMA_CM_EVENT_CONNECT_RESPONSE
                | sys::RDMA_CM_EVENT_ESTABLISHED
                | sys::RDMA_CM_EVENT_REJECTED
        ) {
            // SAFETY: for these connected-mode events `param.conn` is the active member.
            let conn = unsafe { ev.param.conn };
            if conn.private_data.is_null() || conn.private_data_len == 0 {
                Vec::new()
            } else {
                // SAFETY: librdmacm points private_data at private_data_len bytes inside the
                // event, valid until the ack below; they are copied now.
                unsafe {
                    std::slice::from_raw_parts(
                        conn.private_data.cast::<u8>(),
                        usize::from(conn.private_data_len),
                    )
                }
                .to_vec()
            }
        } else {
            Vec::new()
        };
        let out = CmEvent {
            kind: CmEventKind::from_raw(ev.event),
            id: ev.id,
            private_data,
            status: ev.status,
        };
        // SAFETY: `event` came from rdma_get_cm_event and is acked exactly once; nothing
        // borrowed from it is used afterwards (`ev` is dead, private data was copied).
        if unsafe { (lib.rdma_ack_cm_event)(event) } != 0 {
            return Err(last_error(format_args!("rdma_ack_cm_event")));
        }
        Ok(Some(out))
    }
}

/// What a [`CmEvent`] reports (`enum rdma_cm_event_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmEventKind {
    ConnectRequest,
    Established,
    Disconnected,
    Rejected,
    Unreachable,
    ConnectError,
    DeviceRemoval,
    TimewaitExit,
    AddrChange,
    Other(u32),
}

impl CmEventKind {
    /// Maps an `rdma_cm_event_type` value.
    pub fn from_raw(event: u32) -> CmEventKind {
        match event {
            sys::RDMA_CM_EVENT_CONNECT_REQUEST => CmEventKind::ConnectRequest,
            sys::RDMA_CM_EVENT_ESTABLISHED => CmEventKind::Established,
            sys::RDMA_CM_EVENT_DISCONNECTED => CmEventKind::Disconnected,
            sys::RDMA_CM_EVENT_REJECTED => CmEventKind::Rejected,
            sys::RDMA_CM_EVENT_UNREACHABLE => CmEventKind::Unreachable,
            sys::RDMA_CM_EVENT_CONNECT_ERROR => CmEventKind::ConnectError,
            sys::RDMA_CM_EVENT_DEVICE_REMOVAL => CmEventKind::DeviceRemoval,
            sys::RDMA_CM_EVENT_TIMEWAIT_EXIT => CmEventKind::TimewaitExit,
            sys::RDMA_CM_EVENT_ADDR_CHANGE => CmEventKind::AddrChange,
            other => CmEventKind::Other(other),
        }
    }
}

/// A CM event, copied out of librdmacm's event (which has already been acked).
#[derive(Debug)]
pub struct CmEvent {
    pub kind: CmEventKind,
    /// The id the event is about. For [`CmEventKind::ConnectRequest`] this is the NEW id for
    /// the incoming connection, owned by the receiver of the event (wrap it with
    /// [`CmId::from_raw`]); otherwise it is an id the caller already owns (a connection or the
    /// listener), to be matched by address.
    pub id: *mut sys::rdma_cm_id,
    /// The connection private data (`param.conn`), for connect request, established and
    /// rejected events; empty otherwise. On InfiniBand the CM carries a fixed-size private
    /// data field, so this may be longer than what the peer sent (zero padded).
    pub private_data: Vec<u8>,
    /// The event status (0, or a negative errno, or for `Rejected` the reject reason).
    pub status: i32,
}

// SAFETY: `id` is only an address used as a handle here; dereferencing it is up to the owner
// of the id, and rdma_cm_ids are not tied to a thread.
unsafe impl Send for CmEvent {}

// ---------------------------------------------------------------------------------------------
// CM id
// ---------------------------------------------------------------------------------------------

/// Owns an `rdma_cm_id` and the QP created on it. `Drop` destroys the QP (if any), then the id.
///
/// Drop it before the [`Cq`] and the [`Pd`] its QP uses.
pub struct CmId {
    id: *mut sys::rdma_cm_id,
    lib: &'static sys::Lib,
    /// Keeps the event channel alive for ids we created on it.
    _channel: Option<Arc<ChannelInner>>,
}

// SAFETY: an rdma_cm_id is a heap object of librdmacm usable from any thread.
unsafe impl Send for CmId {}
// SAFETY: the `&self` operations are rdma_accept/reject/disconnect (serialised by librdmacm's
// per-id handling in the kernel), ibv_post_send/recv (thread-safe in libibverbs providers,
// which lock the queues) and reads of fields that only change under `&mut self`.
unsafe impl Sync for CmId {}

impl CmId {
    /// Takes ownership of `id`, e.g. the new id of a [`CmEventKind::ConnectRequest`].
    ///
    /// # Safety
    /// `id` must be a live `rdma_cm_id` not owned by anything else (it will be destroyed on
    /// drop), and the [`EventChannel`] it reports to must outlive the returned `CmId`.
    pub unsafe fn from_raw(id: *mut sys::rdma_cm_id) -> CmId {
        let lib = sys::lib().expect("an rdma_cm_id exists, so rdma-core was loaded");
        CmId {
            id,
            lib,
            _channel: None,
        }
    }

    /// Identifies the device context the id is bound to (connections on one device share a
    /// protection domain).
    pub fn device_key(&self) -> usize {
        // SAFETY: a live id; `verbs` is set once the id is bound to a device.
        unsafe { (*self.id).verbs as usize }
    }

    /// The raw id (still owned by `self`).
    pub fn as_ptr(&self) -> *mut sys::rdma_cm_id {
        self.id
    }

    fn verbs(&self) -> io::Result<*mut sys::ibv_context> {
        // SAFETY: we own a live id.
        let verbs = unsafe { (*self.id).verbs };
        if verbs.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the rdma_cm_id is not bound to an RDMA device",
            ));
        }
        Ok(verbs)
    }

    fn qp(&self) -> io::Result<*mut sys::ibv_qp> {
        // SAFETY: we own a live id.
        let qp = unsafe { (*self.id).qp };
        if qp.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no QP on this rdma_cm_id",
            ));
        }
        Ok(qp)
    }

    /// The local address (`rdma_get_local_addr`), if it is IPv4 or IPv6.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        // SAFETY: we own a live id; the address is a sockaddr_storage inside it.
        unsafe { socket_addr_from_c(sys::rdma_get_local_addr(self.id)) }
    }

    /// The peer address (`rdma_get_peer_addr`), if it is IPv4 or IPv6.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        // SAFETY: we own a live id; the address is a sockaddr_storage inside it.
        unsafe { socket_addr_from_c(sys::rdma_get_peer_addr(self.id)) }
    }

    /// The RDMA device name (e.g. `mlx5_0`), or an empty string if the id is not bound to one.
    pub fn device_name(&self) -> String {
        let Ok(verbs) = self.verbs() else {
            return String::new();
        };
        // SAFETY: a bound id's `verbs` is a live context with a valid device pointer.
        let device = unsafe { (*verbs).device };
        if device.is_null() {
            return String::new();
        }
        // SAFETY: a live device; the name is a NUL-terminated array inside it, copied at once.
        sys::cstr_to_string(unsafe { (self.lib.ibv_get_device_name)(device) })
    }

    /// Allocates a protection domain on the id's device.
    pub fn alloc_pd(&self) -> io::Result<Arc<Pd>> {
        let verbs = self.verbs()?;
        // SAFETY: live context of a bound id.
        let pd = unsafe { (self.lib.ibv_alloc_pd)(verbs) };
        if pd.is_null() {
            return Err(last_error(format_args!("ibv_alloc_pd")));
        }
        Ok(Arc::new(Pd { pd, lib: self.lib }))
    }

    /// Creates a completion queue of at least `entries` entries on the id's device, with its
    /// own completion channel (nonblocking fd), armed once with `ibv_req_notify_cq`.
    pub fn create_cq(&self, entries: i32) -> io::Result<Cq> {
        let verbs = self.verbs()?;
        let lib = self.lib;
        // SAFETY: live context of a bound id.
        let channel = unsafe { (lib.ibv_create_comp_channel)(verbs) };
        if channel.is_null() {
            return Err(last_error(format_args!("ibv_create_comp_channel")));
        }
        // SAFETY: live context and channel; no cq_context; comp vector 0 always exists.
        let cq = unsafe { (lib.ibv_create_cq)(verbs, entries, ptr::null_mut(), channel, 0) };
        if cq.is_null() {
            let err = last_error(format_args!("ibv_create_cq({entries})"));
            // SAFETY: the channel is live and no CQ uses it.
            unsafe { (lib.ibv_destroy_comp_channel)(channel) };
            return Err(err);
        }
        // From here on, Cq's Drop cleans up on every error path.
        let cq = Cq { cq, channel, lib };
        set_nonblocking(cq.channel_fd(), "completion channel: fcntl(O_NONBLOCK)")?;
        cq.arm()?;
        Ok(cq)
    }

    /// Creates an RC queue pair on the id (`rdma_create_qp`), with send and receive
    /// completions both on `cq`.
    ///
    /// `pd` and `cq` must outlive the QP, i.e. this `CmId` (see the module docs).
    pub fn create_qp(
        &mut self,
        pd: &Pd,
        cq: &Cq,
        max_send_wr: u32,
        max_recv_wr: u32,
        max_send_sge: u32,
        max_recv_sge: u32,
    ) -> io::Result<()> {
        if self.qp().is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the rdma_cm_id already has a QP",
            ));
        }
        let mut attr = sys::ibv_qp_init_attr {
            qp_context: ptr::null_mut(),
            send_cq: cq.cq,
            recv_cq: cq.cq,
            srq: ptr::null_mut(),
            cap: sys::ibv_qp_cap {
                max_send_wr,
                max_recv_wr,
                max_send_sge,
                max_recv_sge,
                max_inline_data: 0,
            },
            qp_type: sys::IBV_QPT_RC,
            sq_sig_all: 0,
        };
        // SAFETY: live id, PD and CQ; `attr` is a valid init attr (read, and `cap` updated).
        if unsafe { (self.lib.rdma_create_qp)(self.id, pd.pd, &mut attr) } != 0 {
            return Err(last_error(format_args!("rdma_create_qp")));
        }
        Ok(())
    }

    /// Accepts the connection request this id came from (`rdma_accept`), with
    /// `rnr_retry_count` 7 (retry forever on receiver-not-ready).
    pub fn accept(
        &self,
        responder_resources: u8,
        initiator_depth: u8,
        private_data: &[u8],
    ) -> io::Result<()> {
        let private_data_len = private_data_len(private_data)?;
        let mut param = sys::rdma_conn_param {
            private_data: private_data.as_ptr().cast(),
            private_data_len,
            responder_resources,
            initiator_depth,
            flow_control: 1,
            retry_count: 7,
            rnr_retry_count: 7,
            srq: 0,
            qp_num: 0,
        };
        // SAFETY: live id; `param` and the private data it points at outlive the call.
        if unsafe { (self.lib.rdma_accept)(self.id, &mut param) } != 0 {
            return Err(last_error(format_args!("rdma_accept")));
        }
        Ok(())
    }

    /// Rejects the connection request this id came from (`rdma_reject`).
    pub fn reject(&self, private_data: &[u8]) -> io::Result<()> {
        let len = private_data_len(private_data)?;
        // SAFETY: live id; the private data outlives the call.
        if unsafe { (self.lib.rdma_reject)(self.id, private_data.as_ptr().cast(), len) } != 0 {
            return Err(last_error(format_args!("rdma_reject")));
        }
        Ok(())
    }

    /// Starts disconnecting (`rdma_disconnect`); a `Disconnected` event follows. The QP moves
    /// to the error state and outstanding work requests complete with `IBV_WC_WR_FLUSH_ERR`.
    pub fn disconnect(&self) -> io::Result<()> {
        // SAFETY: live id.
        if unsafe { (self.lib.rdma_disconnect)(self.id) } != 0 {
            return Err(last_error(format_args!("rdma_disconnect")));
        }
        Ok(())
    }

    /// Posts one receive work request scattering into `sge`.
    ///
    /// # Safety
    /// Every sge's memory must stay valid and registered (its [`Region`] alive) until the
    /// completion for `wr_id` is polled, and nothing may read or write it meanwhile.
    pub unsafe fn post_recv(&self, wr_id: u64, sge: &[Sge]) -> io::Result<()> {
        let qp = self.qp()?;
        let mut wr = sys::ibv_recv_wr {
            wr_id,
            next: ptr::null_mut(),
            // `Sge` is `#[repr(C)]` with the layout of `ibv_sge` (tests/layout.rs checks it);
            // providers only read the list.
            sg_list: sge.as_ptr().cast_mut().cast(),
            num_sge: num_sge(sge)?,
        };
        let mut bad: *mut sys::ibv_recv_wr = ptr::null_mut();
        // SAFETY: live QP; `wr` and the sge list outlive the call (the provider copies them
        // into the queue); the caller guarantees the buffers per this fn's contract.
        let rc = unsafe { sys::ibv_post_recv(qp, &mut wr, &mut bad) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc.abs()));
        }
        Ok(())
    }

    /// Posts one Send of the bytes gathered from `sge`; `signaled` asks for a completion
    /// (unsignaled sends complete silently, but at least one in every send-queue depth must be
    /// signaled so the queue slots are freed).
    ///
    /// # Safety
    /// As for [`CmId::post_recv`].
    pub unsafe fn post_send(&self, wr_id: u64, sge: &[Sge], signaled: bool) -> io::Result<()> {
        let mut wr = sys::ibv_send_wr::zeroed();
        wr.opcode = sys::IBV_WR_SEND;
        // SAFETY: forwarded contract.
        unsafe { self.post(wr_id, sge, signaled, wr) }
    }

    /// Posts one RDMA Read from the peer's `remote_addr`/`rkey` into `local`.
    ///
    /// # Safety
    /// As for [`CmId::post_recv`] (the local sges are written by the HCA).
    pub unsafe fn post_rdma_read(
        &self,
        wr_id: u64,
        local: &[Sge],
        remote_addr: u64,
        rkey: u32,
        signaled: bool,
    ) -> io::Result<()> {
        let mut wr = sys::ibv_send_wr::zeroed();
        wr.opcode = sys::IBV_WR_RDMA_READ;
        wr.wr.rdma = sys::ibv_send_wr_rdma { remote_addr, rkey };
        // SAFETY: forwarded contract.
        unsafe { self.post(wr_id, local, signaled, wr) }
    }

    /// Posts one RDMA Write of `local` to the peer's `remote_addr`/`rkey`.
    ///
    /// # Safety
    /// As for [`CmId::post_recv`].
    pub unsafe fn post_rdma_write(
        &self,
        wr_id: u64,
        local: &[Sge],
        remote_addr: u64,
        rkey: u32,
        signaled: bool,
    ) -> io::Result<()> {
        let mut wr = sys::ibv_send_wr::zeroed();
        wr.opcode = sys::IBV_WR_RDMA_WRITE;
        wr.wr.rdma = sys::ibv_send_wr_rdma { remote_addr, rkey };
        // SAFETY: forwarded contract.
        unsafe { self.post(wr_id, local, signaled, wr) }
    }

    /// # Safety
    /// As for [`CmId::post_recv`].
    unsafe fn post(
        &self,
        wr_id: u64,
        sge: &[Sge],
        signaled: bool,
        mut wr: sys::ibv_send_wr,
    ) -> io::Result<()> {
        let qp = self.qp()?;
        wr.wr_id = wr_id;
        wr.sg_list = sge.as_ptr().cast_mut().cast();
        wr.num_sge = num_sge(sge)?;
        wr.send_flags = if signaled { sys::IBV_SEND_SIGNALED } else { 0 };
        let mut bad: *mut sys::ibv_send_wr = ptr::null_mut();
        // SAFETY: live QP; `wr` and the sge list outlive the call (the provider builds the WQE
        // from them); the caller guarantees the buffers per this fn's contract.
        let rc = unsafe { sys::ibv_post_send(qp, &mut wr, &mut bad) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc.abs()));
        }
        Ok(())
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: we own the id. rdma_destroy_qp is required before rdma_destroy_id when a QP
        // exists, and ids with unacked events would block, but next_event acks every event.
        unsafe {
            if !(*self.id).qp.is_null() {
                (self.lib.rdma_destroy_qp)(self.id);
            }
            if (self.lib.rdma_destroy_id)(self.id) != 0 {
                let error = io::Error::last_os_error();
                tracing::warn!(%error, "rdma_destroy_id failed; leaking the id");
            }
        }
    }
}

fn private_data_len(private_data: &[u8]) -> io::Result<u8> {
    u8::try_from(private_data.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} bytes of private data (at most 255)", private_data.len()),
        )
    })
}

fn num_sge(sge: &[Sge]) -> io::Result<c_int> {
    c_int::try_from(sge.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many sges"))
}

/// A `SocketAddr` as a `sockaddr_in`/`sockaddr_in6` inside a `sockaddr_storage`.
fn socket_addr_to_c(addr: SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr_*.
            let sin = unsafe { &mut *ptr::addr_of_mut!(storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            };
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr_*.
            let sin6 = unsafe { &mut *ptr::addr_of_mut!(storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
        }
    }
    storage
}

/// Reads an IPv4 or IPv6 `sockaddr`; `None` for other families (unset, `AF_IB`).
///
/// # Safety
/// `sa` must point at a `sockaddr_storage`-sized, initialised socket address.
unsafe fn socket_addr_from_c(sa: *const libc::sockaddr) -> Option<SocketAddr> {
    // SAFETY: the caller guarantees `sa` is valid; every family starts with sa_family.
    let family = c_int::from(unsafe { (*sa).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in, and the storage is big enough.
            let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6, and the storage is big enough.
            let sin6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Scatter/gather entries, protection domains, registered memory
// ---------------------------------------------------------------------------------------------

/// One scatter/gather entry: `length` bytes at `addr` inside the memory region with `lkey`.
/// Layout-identical to `struct ibv_sge` (checked by `tests/layout.rs`), so a `&[Sge]` is passed
/// to the provider as the sge list without copying.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sge {
    pub addr: u64,
    pub length: u32,
    pub lkey: u32,
}

/// A protection domain. `Drop` deallocates it; it must outlive the QPs created with it, and
/// the [`Region`]s registered in it hold an `Arc` to it.
pub struct Pd {
    pd: *mut sys::ibv_pd,
    lib: &'static sys::Lib,
}

// SAFETY: an ibv_pd is usable from any thread; the PD itself is never mutated through us.
unsafe impl Send for Pd {}
// SAFETY: the `&self` operation, ibv_reg_mr, is thread-safe in libibverbs.
unsafe impl Sync for Pd {}

impl Pd {
    /// The raw PD (still owned by `self`).
    pub fn as_ptr(&self) -> *mut sys::ibv_pd {
        self.pd
    }

    /// Registers memory we do not own (the store's I/O arenas).
    ///
    /// # Safety
    /// `ptr..ptr + len` must stay allocated, and never be freed or remapped, for as long as
    /// the returned [`Mr`] lives.
    pub unsafe fn register_external(
        self: &Arc<Pd>,
        ptr: *mut u8,
        len: usize,
        access: Access,
    ) -> io::Result<Mr> {
        // SAFETY: live PD; the caller keeps the memory valid for the MR's life.
        let mr =
            unsafe { (self.lib.ibv_reg_mr)(self.pd, ptr.cast::<c_void>(), len, access.bits()) };
        if mr.is_null() {
            return Err(last_error(format_args!(
                "ibv_reg_mr({len} bytes, {access:?})"
            )));
        }
        // SAFETY: a live MR returned by ibv_reg_mr; lkey/rkey never change afterwards.
        let (lkey, rkey) = unsafe { ((*mr).lkey, (*mr).rkey) };
        Ok(Mr {
            mr,
            lkey,
            rkey,
            pd: Arc::clone(self),
        })
    }

    /// Allocates `len` zeroed bytes, 4096-aligned, and registers them with `access`.
    /// (`remote_write` requires `local_write`; the verbs return `EINVAL` otherwise.)
    pub fn register(self: &Arc<Pd>, len: usize, access: Access) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot register 0 bytes",
            ));
        }
        let layout = Layout::from_size_align(len, 4096).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("region of {len} bytes: {e}"),
            )
        })?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("allocating a {len}-byte region"),
            ));
        }
        // SAFETY: `ptr..ptr+len` is our allocation, which outlives the MR: Region's Drop
        // deregisters before it frees.
        match unsafe { self.register_external(ptr, len, access) } {
            Ok(mr) => Ok(Region {
                mr: Some(mr),
                ptr,
                layout,
            }),
            Err(e) => {
                // SAFETY: allocated above with `layout` and not registered.
                unsafe { alloc::dealloc(ptr, layout) };
                Err(e)
            }
        }
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: we own the PD; Regions hold an Arc to us, so no MR of ours remains.
        let rc = unsafe { (self.lib.ibv_dealloc_pd)(self.pd) };
        if rc != 0 {
            tracing::warn!(error = %io::Error::from_raw_os_error(rc), "ibv_dealloc_pd failed (a QP still uses it?); leaking the PD");
        }
    }
}

/// Access rights of a [`Region`] (`IBV_ACCESS_*`). Local read is always allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// The HCA may write into the region: receives and RDMA Read targets.
    pub local_write: bool,
    /// The peer may RDMA Read from the region.
    pub remote_read: bool,
    /// The peer may RDMA Write into the region (requires `local_write`).
    pub remote_write: bool,
}

impl Access {
    /// The `IBV_ACCESS_*` bits.
    pub fn bits(self) -> c_int {
        let mut bits = 0;
        if self.local_write {
            bits |= sys::IBV_ACCESS_LOCAL_WRITE;
        }
        if self.remote_read {
            bits |= sys::IBV_ACCESS_REMOTE_READ;
        }
        if self.remote_write {
            bits |= sys::IBV_ACCESS_REMOTE_WRITE;
        }
        bits
    }
}

/// A registered memory region that owns its (4096-aligned) memory. `Drop` deregisters, then
/// frees; if deregistration fails the memory is leaked rather than freed under the HCA.
///
/// Dropping a region while a posted work request still uses it is prevented only by the
/// `unsafe` contract of the post calls.
pub struct Region {
    /// `None` only while dropping.
    mr: Option<Mr>,
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the MR and the memory are owned by the Region and not tied to a thread.
unsafe impl Send for Region {}
// SAFETY: the safe `&self` methods only read immutable fields; access to the bytes goes
// through the `unsafe` slice methods, whose callers take on the aliasing rules.
unsafe impl Sync for Region {}

impl Region {
    /// The start of the region.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Always false: empty regions cannot be registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mr(&self) -> &Mr {
        self.mr
            .as_ref()
            .expect("a Region has its MR until it drops")
    }

    pub fn lkey(&self) -> u32 {
        self.mr().lkey
    }

    pub fn rkey(&self) -> u32 {
        self.mr().rkey
    }

    /// The protection domain it is registered in.
    pub fn pd(&self) -> &Arc<Pd> {
        &self.mr().pd
    }

    fn check_range(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len()),
            "range {offset}+{len} is outside the {}-byte region",
            self.len()
        );
    }

    /// The sge for `len` bytes at `offset`. Panics if that is outside the region.
    pub fn sge(&self, offset: usize, len: u32) -> Sge {
        self.check_range(offset, len as usize);
        Sge {
            addr: self.ptr as u64 + offset as u64,
            length: len,
            lkey: self.lkey(),
        }
    }

    /// The bytes at `offset..offset + len`. Panics if that is outside the region.
    ///
    /// # Safety
    /// No posted work request may write these bytes (receive, RDMA Read target, or peer RDMA
    /// Write) and no `&mut` from [`Region::slice_mut`] may overlap them while the slice lives.
    pub unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        self.check_range(offset, len);
        // SAFETY: in range of our live, initialised (zeroed) allocation; the caller excludes
        // concurrent writers.
        unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) }
    }

    /// The bytes at `offset..offset + len`, mutably. Panics if that is outside the region.
    ///
    /// # Safety
    /// No posted work request may read or write these bytes, and no other slice from this
    /// region may overlap them, while the returned slice lives.
    #[allow(clippy::mut_from_ref)] // The region is shared memory by design; the caller excludes aliasing.
    pub unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        self.check_range(offset, len);
        // SAFETY: in range of our live, initialised allocation; the caller guarantees
        // exclusive access to the range.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let Some(mr) = self.mr.take() else { return };
        if mr.deregister().is_err() {
            // The device may still reach the memory: never hand it back to the allocator.
            tracing::warn!(
                len = self.len(),
                "leaking an RDMA region that would not deregister"
            );
            return;
        }
        // SAFETY: allocated in `Pd::register` with this layout; no longer registered.
        unsafe { alloc::dealloc(self.ptr, self.layout) };
    }
}

/// A registration of memory owned elsewhere ([`Pd::register_external`]); `Drop` deregisters.
pub struct Mr {
    mr: *mut sys::ibv_mr,
    lkey: u32,
    rkey: u32,
    pd: Arc<Pd>,
}

// SAFETY: an ibv_mr is a handle usable from any thread; we only read its keys.
unsafe impl Send for Mr {}
// SAFETY: as above; no `&self` method mutates anything.
unsafe impl Sync for Mr {}

impl Mr {
    pub fn lkey(&self) -> u32 {
        self.lkey
    }

    pub fn rkey(&self) -> u32 {
        self.rkey
    }
}

impl Mr {
    /// Deregisters now, telling whether it worked (memory the device may still reach must not
    /// be freed).
    fn deregister(mut self) -> io::Result<()> {
        let r = self.dereg();
        self.mr = std::ptr::null_mut(); // Drop: nothing left to do
        r
    }

    fn dereg(&self) -> io::Result<()> {
        if self.mr.is_null() {
            return Ok(());
        }
        // SAFETY: we own the MR and deregister it once (`deregister` nulls it).
        let rc = unsafe { (self.pd.lib.ibv_dereg_mr)(self.mr) };
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc);
            tracing::warn!(error = %e, "ibv_dereg_mr failed");
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        let _ = self.dereg();
    }
}

// ---------------------------------------------------------------------------------------------
// Completion queues
// ---------------------------------------------------------------------------------------------

/// A completion queue with its own completion channel, whose fd is nonblocking.
///
/// Use: wait for `channel_fd()` to be readable, call [`Cq::take_event`] (which re-arms), then
/// [`Cq::poll`] until it returns fewer than asked. Polling after re-arming means no completion
/// is missed.
///
/// Drop it after the [`CmId`] whose QP uses it. `Drop` destroys the CQ, then the channel
/// (every channel event was acked by `take_event`, which `ibv_destroy_cq` requires).
pub struct Cq {
    cq: *mut sys::ibv_cq,
    channel: *mut sys::ibv_comp_channel,
    lib: &'static sys::Lib,
}

// SAFETY: the CQ and channel are not tied to a thread.
unsafe impl Send for Cq {}
// SAFETY: ibv_poll_cq and ibv_req_notify_cq are thread-safe in libibverbs providers (they lock
// the CQ), and ibv_get_cq_event/ibv_ack_cq_events are a read(2) and a mutex-protected counter.
unsafe impl Sync for Cq {}

impl Cq {
    /// The raw CQ (still owned by `self`).
    pub fn as_ptr(&self) -> *mut sys::ibv_cq {
        self.cq
    }

    /// The completion channel's fd (nonblocking).
    pub fn channel_fd(&self) -> RawFd {
        // SAFETY: the channel lives as long as `self`.
        unsafe { (*self.channel).fd }
    }

    fn arm(&self) -> io::Result<()> {
        // SAFETY: live CQ.
        let rc = unsafe { sys::ibv_req_notify_cq(self.cq, 0) };
        if rc != 0 {
            return Err(errno_error("ibv_req_notify_cq", rc));
        }
        Ok(())
    }

    /// Reads a pending completion-channel event (nonblocking; `Ok(false)` if there is none),
    /// acks it and re-arms the CQ.
    pub fn take_event(&self) -> io::Result<bool> {
        let mut cq: *mut sys::ibv_cq = ptr::null_mut();
        let mut context: *mut c_void = ptr::null_mut();
        // SAFETY: live channel; valid out-pointers.
        if unsafe { (self.lib.ibv_get_cq_event)(self.channel, &mut cq, &mut context) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(io::Error::new(
                err.kind(),
                format!("ibv_get_cq_event: {err}"),
            ));
        }
        // The channel serves only this CQ, so `cq == self.cq`.
        // SAFETY: one event was received for this live CQ and is acked once.
        unsafe { (self.lib.ibv_ack_cq_events)(self.cq, 1) };
        self.arm()?;
        Ok(true)
    }

    /// Polls up to `max` completions, appending them to `out`; returns how many.
    pub fn poll(&self, out: &mut Vec<WorkCompletion>, max: usize) -> io::Result<usize> {
        const BATCH: usize = 32;
        let mut wcs = [sys::ibv_wc::default(); BATCH];
        let mut total = 0;
        while total < max {
            let want = (max - total).min(BATCH);
            // SAFETY: live CQ; `wcs` has room for `want <= BATCH` entries.
            let n = unsafe { sys::ibv_poll_cq(self.cq, want as c_int, wcs.as_mut_ptr()) };
            if n < 0 {
                return Err(io::Error::other(format!("ibv_poll_cq failed ({n})")));
            }
            let n = n as usize;
            out.extend(wcs[..n].iter().map(WorkCompletion::from_wc));
            total += n;
            if n < want {
                break;
            }
        }
        Ok(total)
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: we own the CQ and channel; take_event acked every event it received.
        unsafe {
            let rc = (self.lib.ibv_destroy_cq)(self.cq);
            if rc != 0 {
                tracing::warn!(
                    error = %io::Error::from_raw_os_error(rc),
                    "ibv_destroy_cq failed (a QP still uses it?); leaking the CQ and its channel"
                );
                return;
            }
            let rc = (self.lib.ibv_destroy_comp_channel)(self.channel);
            if rc != 0 {
                tracing::warn!(error = %io::Error::from_raw_os_error(rc), "ibv_destroy_comp_channel failed");
            }
        }
    }
}

/// A work completion, copied from `struct ibv_wc`.
#[derive(Clone, Copy, Debug)]
pub struct WorkCompletion {
    pub wr_id: u64,
    /// `enum ibv_wc_status`.
    pub status: u32,
    /// `enum ibv_wc_opcode` (`IBV_WC_RECV` etc.); only meaningful if `ok`.
    pub opcode: u32,
    /// Bytes received (receives, RDMA Read); only meaningful if `ok`.
    pub byte_len: u32,
    /// `status == IBV_WC_SUCCESS`.
    pub ok: bool,
}

impl WorkCompletion {
    fn from_wc(wc: &sys::ibv_wc) -> WorkCompletion {
        WorkCompletion {
            wr_id: wc.wr_id,
            status: wc.status,
            opcode: wc.opcode,
            byte_len: wc.byte_len,
            ok: wc.status == sys::IBV_WC_SUCCESS,
        }
    }

    /// `ibv_wc_status_str(status)`, e.g. "success", "Work Request Flushed Error".
    pub fn status_str(&self) -> String {
        match sys::lib() {
            Ok(lib) => sys::wc_status_str(lib, self.status),
            Err(_) => format!("status {}", self.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip_through_sockaddr() {
        for addr in [
            "192.0.2.7:20049".parse::<SocketAddr>().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            "[2001:db8::1]:20049".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 20049, 7, 3)),
        ] {
            let storage = socket_addr_to_c(addr);
            // SAFETY: `storage` is an initialised sockaddr_storage.
            let back = unsafe { socket_addr_from_c(ptr::addr_of!(storage).cast()) };
            assert_eq!(back, Some(addr));
        }
    }

    #[test]
    fn an_unset_sockaddr_has_no_socket_address() {
        // SAFETY: all zeroes is a valid sockaddr_storage.
        let storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: `storage` is an initialised sockaddr_storage.
        let addr = unsafe { socket_addr_from_c(ptr::addr_of!(storage).cast()) };
        assert_eq!(addr, None);
    }

    #[test]
    fn access_maps_to_the_ibv_access_bits() {
        assert_eq!(Access::default().bits(), 0);
        let all = Access {
            local_write: true,
            remote_read: true,
            remote_write: true,
        };
        assert_eq!(all.bits(), 0b111);
        let read = Access {
            remote_read: true,
            ..Access::default()
        };
        assert_eq!(read.bits(), sys::IBV_ACCESS_REMOTE_READ);
    }

    #[test]
    fn cm_event_kinds_map_from_the_c_values() {
        assert_eq!(CmEventKind::from_raw(4), CmEventKind::ConnectRequest);
        assert_eq!(CmEventKind::from_raw(9), CmEventKind::Established);
        assert_eq!(CmEventKind::from_raw(10), CmEventKind::Disconnected);
        assert_eq!(CmEventKind::from_raw(15), CmEventKind::TimewaitExit);
        assert_eq!(CmEventKind::from_raw(0), CmEventKind::Other(0));
    }

    #[test]
    fn the_event_channel_opens_or_explains_why_not() {
        match EventChannel::new() {
            Ok(channel) => assert!(channel.fd() >= 0),
            Err(err) => {
                let msg = err.to_string();
                if std::path::Path::new("/dev/infiniband/rdma_cm").exists() {
                    panic!("rdma_cm exists but the channel failed: {msg}");
                }
                assert!(
                    msg.contains("is rdma_ucm loaded") || msg.contains("libibverbs.so.1"),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn types_that_cross_threads_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<EventChannel>();
        send_sync::<CmId>();
        send_sync::<Pd>();
        send_sync::<Region>();
        send_sync::<Cq>();
        send::<CmEvent>();
        send_sync::<WorkCompletion>();
    }
}
