//! Clients and sessions (RFC 8881 §18.35-§18.51): EXCHANGE_ID, CREATE_SESSION,
//! DESTROY_SESSION, DESTROY_CLIENTID, BIND_CONN_TO_SESSION, BACKCHANNEL_CTL, RECLAIM_COMPLETE,
//! and the security queries SECINFO and SECINFO_NO_NAME. SEQUENCE runs in `compound.rs`.

use backend::Store;
use nfs_proto::limits::{COMPOUND_OPS_MAX, RECORD_LEN_MAX};
use nfs_proto::v4::*;

use super::{check_name, store_err, OpFlags, Sessionless};
use crate::v4::compound::Ctx;
use crate::v4::{Nfs4, CACHED_REPLY_LEN_MAX, SLOTS_MAX};

pub const SEQUENCE_FLAGS: OpFlags = OpFlags {
    is_sequence: true,
    ..OpFlags::PLAIN
};
const SOLO_MODIFY: OpFlags = OpFlags {
    sessionless: Sessionless::Solo,
    modifies: true,
    reply_max: 2048,
    ..OpFlags::PLAIN
};
pub const EXCHANGE_ID_FLAGS: OpFlags = SOLO_MODIFY;
pub const CREATE_SESSION_FLAGS: OpFlags = SOLO_MODIFY;
pub const DESTROY_SESSION_FLAGS: OpFlags = SOLO_MODIFY;
pub const DESTROY_CLIENTID_FLAGS: OpFlags = SOLO_MODIFY;
pub const BIND_CONN_TO_SESSION_FLAGS: OpFlags = SOLO_MODIFY;
pub const BACKCHANNEL_CTL_FLAGS: OpFlags = OpFlags::PLAIN;
pub const RECLAIM_COMPLETE_FLAGS: OpFlags = OpFlags {
    modifies: true,
    ..OpFlags::PLAIN
};
/// SECINFO and SECINFO_NO_NAME consume the current filehandle (§2.6.3.1.1.8).
pub const SECINFO_NO_NAME_FLAGS: OpFlags = OpFlags {
    sets_fh: true,
    pseudo_ok: true,
    ..OpFlags::FH
};
pub const SECINFO_FLAGS: OpFlags = SECINFO_NO_NAME_FLAGS;

/// EXCHANGE_ID (§18.35). Only SP4_NONE state protection is offered.
pub fn exchange_id<S>(cx: &mut Ctx<'_, S>, a: &ExchangeId4Args) -> Res<ExchangeId4ResOk> {
    // The flags a client may send in NFSv4.1 (§18.35.3); anything else is NFS4ERR_INVAL.
    const CLIENT_FLAGS: u32 = exchgid4::FLAG_SUPP_MOVED_REFER
        | exchgid4::FLAG_SUPP_MOVED_MIGR
        | exchgid4::FLAG_BIND_PRINC_STATEID
        | exchgid4::FLAG_MASK_PNFS
        | exchgid4::FLAG_UPD_CONFIRMED_REC_A;
    if a.flags & !CLIENT_FLAGS != 0 {
        return Err(Nfsstat4::Inval);
    }
    match a.state_protect {
        StateProtect4A::None => {}
        StateProtect4A::MachCred(_) => return Err(Nfsstat4::NotSupp),
        StateProtect4A::Ssv(_) => return Err(Nfsstat4::EncrAlgUnsupp),
    }
    let update = a.flags & exchgid4::FLAG_UPD_CONFIRMED_REC_A != 0;
    let (result, purged) = {
        let mut st = cx.nfs4.lock();
        let r = st.exchange_id(
            &a.clientowner.co_ownerid.0,
            a.clientowner.co_verifier,
            &super::principal(cx.req),
            update,
            Some(cx.req.local.ip().to_canonical()),
            cx.now,
        );
        (r, st.take_purged())
    };
    super::lock::release_clients(cx.server, &purged);
    let (clientid, sequenceid, confirmed) = result?;
    let mut flags = exchgid4::FLAG_USE_NON_PNFS;
    if confirmed {
        flags |= exchgid4::FLAG_CONFIRMED_R;
    }
    Ok(ExchangeId4ResOk {
        clientid,
        sequenceid,
        flags,
        state_protect: StateProtect4R::None,
        server_owner: cx.nfs4.server_owner.clone(),
        server_scope: cx.nfs4.server_scope.clone(),
        server_impl_id: Some(Nfs4::impl_id()),
    })
}

/// The fore channel this server grants for what the client asked (§18.36.3).
pub fn negotiate_fore(asked: &ChannelAttrs4) -> ChannelAttrs4 {
    ChannelAttrs4 {
        ca_headerpadsize: 0,
        ca_maxrequestsize: asked.ca_maxrequestsize.min(RECORD_LEN_MAX as u32),
        ca_maxresponsesize: asked.ca_maxresponsesize.min(RECORD_LEN_MAX as u32),
        ca_maxresponsesize_cached: asked.ca_maxresponsesize_cached.min(CACHED_REPLY_LEN_MAX),
        ca_maxoperations: asked.ca_maxoperations.min(COMPOUND_OPS_MAX),
        ca_maxrequests: asked.ca_maxrequests.clamp(1, SLOTS_MAX),
        ca_rdma_ird: None,
    }
}

/// CREATE_SESSION (§18.36). The back channel is accepted as offered but never used: this
/// server makes no callbacks (it grants no delegations).
pub fn create_session<S>(cx: &mut Ctx<'_, S>, a: &CreateSession4Args) -> Res<CreateSession4ResOk> {
    const FLAGS: u32 = create_session4::FLAG_PERSIST
        | create_session4::FLAG_CONN_BACK_CHAN
        | create_session4::FLAG_CONN_RDMA;
    if a.flags & !FLAGS != 0 {
        return Err(Nfsstat4::Inval);
    }
    let mut st = cx.nfs4.lock();
    st.expire(cx.now);
    let c = st.check_client(a.clientid)?;
    // §18.36.4: only the principal that created an unconfirmed record may confirm it.
    if !c.confirmed && c.principal != super::principal(cx.req) {
        return Err(Nfsstat4::ClidInUse);
    }
    if let Some((seq, reply)) = &c.cs_reply {
        if *seq == a.sequence {
            return reply.clone();
        }
    }
    if a.sequence != c.next_cs_seq {
        return Err(Nfsstat4::SeqMisordered);
    }
    let fore = negotiate_fore(&a.fore_chan_attrs);
    // A channel on which no request or reply could fit (§18.36.3, NFS4ERR_TOOSMALL).
    let usable = |c: &ChannelAttrs4| c.ca_maxrequestsize >= 256 && c.ca_maxresponsesize >= 256;
    if !usable(&fore) || !usable(&a.back_chan_attrs) {
        return Err(Nfsstat4::TooSmall);
    }
    let back = ChannelAttrs4 {
        ca_rdma_ird: None,
        ..a.back_chan_attrs.clone()
    };
    st.confirm(a.clientid);
    let sessionid = st.create_session(a.clientid, fore.clone(), (cx.req.peer, cx.req.local));
    let res = Ok(CreateSession4ResOk {
        sessionid,
        sequence: a.sequence,
        flags: a.flags & create_session4::FLAG_CONN_BACK_CHAN,
        fore_chan_attrs: fore,
        back_chan_attrs: back,
    });
    let purged = st.take_purged();
    super::lock::release_clients(cx.server, &purged);
    let c = st.client_mut(a.clientid).expect("checked above");
    c.next_cs_seq = a.sequence.wrapping_add(1);
    c.cs_reply = Some((a.sequence, res.clone()));
    c.renewed = cx.now;
    res
}

pub fn destroy_session<S>(cx: &mut Ctx<'_, S>, id: &SessionId4) -> Result<(), Nfsstat4> {
    cx.nfs4
        .lock()
        .destroy_session(id, (cx.req.peer, cx.req.local))
}

pub fn destroy_clientid<S>(cx: &mut Ctx<'_, S>, id: Clientid4) -> Result<(), Nfsstat4> {
    let (r, purged) = {
        let mut st = cx.nfs4.lock();
        let r = st.destroy_client(id);
        (r, st.take_purged())
    };
    super::lock::release_clients(cx.server, &purged);
    r
}

/// channel_dir_from_client4 and channel_dir_from_server4 (RFC 8881 §18.34.1; not in the
/// codec's constants).
mod cdfc4 {
    pub const FORE: u32 = 0x1;
    pub const BACK: u32 = 0x2;
    pub const FORE_OR_BOTH: u32 = 0x3;
    pub const BACK_OR_BOTH: u32 = 0x7;
}
mod cdfs4 {
    pub const FORE: u32 = 0x1;
    pub const BACK: u32 = 0x2;
    pub const BOTH: u32 = 0x3;
}

/// BIND_CONN_TO_SESSION (§18.34). Connections are not tracked per session yet: any
/// connection may carry any session's requests, so binding only checks the session.
pub fn bind_conn<S>(
    cx: &mut Ctx<'_, S>,
    a: &BindConnToSession4Args,
) -> Res<BindConnToSession4ResOk> {
    let dir = match a.dir {
        cdfc4::FORE => cdfs4::FORE,
        cdfc4::BACK => cdfs4::BACK,
        cdfc4::FORE_OR_BOTH | cdfc4::BACK_OR_BOTH => cdfs4::BOTH,
        _ => return Err(Nfsstat4::Inval),
    };
    cx.nfs4
        .lock()
        .bind_conn(&a.sessid, (cx.req.peer, cx.req.local))?;
    Ok(BindConnToSession4ResOk {
        sessid: a.sessid,
        dir,
        use_conn_in_rdma_mode: false,
    })
}

/// RECLAIM_COMPLETE (§18.51): the client reclaimed what it will; the grace period ends early
/// once every client of the previous instance has said so.
pub fn reclaim_complete<S>(cx: &mut Ctx<'_, S>, one_fs: bool) -> Result<(), Nfsstat4> {
    let id = cx.clientid()?;
    if one_fs {
        return Ok(());
    }
    cx.nfs4
        .lock()
        .reclaim_complete(&mut cx.server.state.grace(), id, cx.now)
}

fn flavors() -> SecinfoList4 {
    SecinfoList4(vec![Secinfo4::Flavor(flavor::AUTH_SYS)])
}

/// SECINFO_NO_NAME (§18.45): AUTH_SYS everywhere.
pub fn secinfo_no_name<S>(cx: &mut Ctx<'_, S>, style: SecinfoStyle4) -> Res<SecinfoList4> {
    let c = cx.cur()?;
    if style == SecinfoStyle4::Parent && c.id == c.export.root {
        return Err(Nfsstat4::NoEnt);
    }
    cx.cur = None;
    Ok(flavors())
}

/// SECINFO (§18.29): the name must exist.
pub async fn secinfo<S: Store>(cx: &mut Ctx<'_, S>, name: &Component4) -> Res<SecinfoList4> {
    let c = cx.cur()?.clone();
    let name = check_name(name)?;
    if let Some(dir) = &c.pseudo {
        let name = std::str::from_utf8(name).map_err(|_| Nfsstat4::Inval)?;
        super::pseudo::lookup(cx, dir, name)?;
        cx.cur = None;
        return Ok(flavors());
    }
    cx.server
        .store
        .lookup(&c.cred, c.id, name)
        .await
        .map_err(store_err)?;
    cx.cur = None;
    Ok(flavors())
}
