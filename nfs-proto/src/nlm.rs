//! NLM version 4 (Network Lock Manager, as in the Open Group's XNFS and RFC 1813 Appendix II)
//! and NSM version 1 (Network Status Monitor): the locking side-band of NFSv3.

use bytes::Bytes;

use crate::xdr::{Encode, Reader, Result, Writer, XdrError};

pub const NLM_PROGRAM: u32 = 100021;
pub const NLM_VERSION: u32 = 4;
pub const NSM_PROGRAM: u32 = 100024;
pub const NSM_VERSION: u32 = 1;

/// LM_MAXSTRLEN: caller names.
pub const LM_MAXSTRLEN: u32 = 1024;
/// MAXNETOBJ_SZ: cookies, owner handles, file handles.
pub const MAXNETOBJ_SZ: u32 = 1024;
/// SM_MAXSTRLEN: NSM host names.
pub const SM_MAXSTRLEN: u32 = 1024;

/// NLM v4 procedures.
pub mod nlmproc {
    pub const NULL: u32 = 0;
    pub const TEST: u32 = 1;
    pub const LOCK: u32 = 2;
    pub const CANCEL: u32 = 3;
    pub const UNLOCK: u32 = 4;
    pub const GRANTED: u32 = 5;
    pub const TEST_MSG: u32 = 6;
    pub const LOCK_MSG: u32 = 7;
    pub const CANCEL_MSG: u32 = 8;
    pub const UNLOCK_MSG: u32 = 9;
    pub const GRANTED_MSG: u32 = 10;
    pub const TEST_RES: u32 = 11;
    pub const LOCK_RES: u32 = 12;
    pub const CANCEL_RES: u32 = 13;
    pub const UNLOCK_RES: u32 = 14;
    pub const GRANTED_RES: u32 = 15;
    pub const SHARE: u32 = 20;
    pub const UNSHARE: u32 = 21;
    pub const NM_LOCK: u32 = 22;
    pub const FREE_ALL: u32 = 23;
}

/// NSM v1 procedures.
pub mod smproc {
    pub const NULL: u32 = 0;
    pub const STAT: u32 = 1;
    pub const MON: u32 = 2;
    pub const UNMON: u32 = 3;
    pub const UNMON_ALL: u32 = 4;
    pub const SIMU_CRASH: u32 = 5;
    pub const NOTIFY: u32 = 6;
}

/// nlm4_stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nlm4Stat {
    Granted = 0,
    Denied = 1,
    DeniedNoLocks = 2,
    Blocked = 3,
    DeniedGracePeriod = 4,
    Deadlock = 5,
    Rofs = 6,
    StaleFh = 7,
    Fbig = 8,
    Failed = 9,
}

impl Nlm4Stat {
    pub fn from_u32(v: u32) -> Result<Nlm4Stat> {
        Ok(match v {
            0 => Nlm4Stat::Granted,
            1 => Nlm4Stat::Denied,
            2 => Nlm4Stat::DeniedNoLocks,
            3 => Nlm4Stat::Blocked,
            4 => Nlm4Stat::DeniedGracePeriod,
            5 => Nlm4Stat::Deadlock,
            6 => Nlm4Stat::Rofs,
            7 => Nlm4Stat::StaleFh,
            8 => Nlm4Stat::Fbig,
            9 => Nlm4Stat::Failed,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

/// nlm4_lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nlm4Lock {
    pub caller_name: Bytes,
    pub fh: Bytes,
    pub oh: Bytes,
    pub svid: u32,
    pub offset: u64,
    pub len: u64,
}

impl Nlm4Lock {
    fn decode(r: &mut Reader) -> Result<Nlm4Lock> {
        Ok(Nlm4Lock {
            caller_name: r.opaque(LM_MAXSTRLEN)?,
            fh: r.opaque(MAXNETOBJ_SZ)?,
            oh: r.opaque(MAXNETOBJ_SZ)?,
            svid: r.u32()?,
            offset: r.u64()?,
            len: r.u64()?,
        })
    }
}

impl Encode for Nlm4Lock {
    fn encode(&self, w: &mut Writer) {
        w.opaque(&self.caller_name);
        w.opaque(&self.fh);
        w.opaque(&self.oh);
        w.u32(self.svid);
        w.u64(self.offset);
        w.u64(self.len);
    }
}

/// nlm4_holder: who holds a conflicting lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nlm4Holder {
    pub exclusive: bool,
    pub svid: u32,
    pub oh: Bytes,
    pub offset: u64,
    pub len: u64,
}

/// Arguments of every NLM v4 procedure we decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NlmArgs {
    Null,
    /// TEST, TEST_MSG, GRANTED, GRANTED_MSG (nlm4_testargs).
    Test {
        cookie: Bytes,
        exclusive: bool,
        lock: Nlm4Lock,
    },
    /// LOCK, LOCK_MSG, NM_LOCK (nlm4_lockargs).
    Lock {
        cookie: Bytes,
        block: bool,
        exclusive: bool,
        lock: Nlm4Lock,
        reclaim: bool,
        state: u32,
    },
    /// CANCEL, CANCEL_MSG (nlm4_cancargs).
    Cancel {
        cookie: Bytes,
        block: bool,
        exclusive: bool,
        lock: Nlm4Lock,
    },
    /// UNLOCK, UNLOCK_MSG (nlm4_unlockargs).
    Unlock {
        cookie: Bytes,
        lock: Nlm4Lock,
    },
    /// LOCK_RES, CANCEL_RES, UNLOCK_RES, GRANTED_RES (nlm4_res).
    Res {
        cookie: Bytes,
        stat: Nlm4Stat,
    },
    /// FREE_ALL (nlm4_notify).
    FreeAll {
        name: Bytes,
        state: u32,
    },
}

impl NlmArgs {
    /// `Ok(None)`: a procedure we do not offer (PROC_UNAVAIL): TEST_RES, SHARE, UNSHARE.
    pub fn decode(proc_: u32, r: &mut Reader) -> Result<Option<NlmArgs>> {
        use nlmproc::*;
        let args = match proc_ {
            NULL => NlmArgs::Null,
            TEST | TEST_MSG | GRANTED | GRANTED_MSG => NlmArgs::Test {
                cookie: r.opaque(MAXNETOBJ_SZ)?,
                exclusive: r.bool()?,
                lock: Nlm4Lock::decode(r)?,
            },
            LOCK | LOCK_MSG | NM_LOCK => NlmArgs::Lock {
                cookie: r.opaque(MAXNETOBJ_SZ)?,
                block: r.bool()?,
                exclusive: r.bool()?,
                lock: Nlm4Lock::decode(r)?,
                reclaim: r.bool()?,
                state: r.u32()?,
            },
            CANCEL | CANCEL_MSG => NlmArgs::Cancel {
                cookie: r.opaque(MAXNETOBJ_SZ)?,
                block: r.bool()?,
                exclusive: r.bool()?,
                lock: Nlm4Lock::decode(r)?,
            },
            UNLOCK | UNLOCK_MSG => NlmArgs::Unlock {
                cookie: r.opaque(MAXNETOBJ_SZ)?,
                lock: Nlm4Lock::decode(r)?,
            },
            LOCK_RES | CANCEL_RES | UNLOCK_RES | GRANTED_RES => NlmArgs::Res {
                cookie: r.opaque(MAXNETOBJ_SZ)?,
                stat: Nlm4Stat::from_u32(r.u32()?)?,
            },
            FREE_ALL => NlmArgs::FreeAll {
                name: r.opaque(LM_MAXSTRLEN)?,
                state: r.u32()?,
            },
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(args))
    }
}

impl Encode for NlmArgs {
    fn encode(&self, w: &mut Writer) {
        match self {
            NlmArgs::Null => {}
            NlmArgs::Test {
                cookie,
                exclusive,
                lock,
            } => {
                w.opaque(cookie);
                w.bool(*exclusive);
                lock.encode(w);
            }
            NlmArgs::Lock {
                cookie,
                block,
                exclusive,
                lock,
                reclaim,
                state,
            } => {
                w.opaque(cookie);
                w.bool(*block);
                w.bool(*exclusive);
                lock.encode(w);
                w.bool(*reclaim);
                w.u32(*state);
            }
            NlmArgs::Cancel {
                cookie,
                block,
                exclusive,
                lock,
            } => {
                w.opaque(cookie);
                w.bool(*block);
                w.bool(*exclusive);
                lock.encode(w);
            }
            NlmArgs::Unlock { cookie, lock } => {
                w.opaque(cookie);
                lock.encode(w);
            }
            NlmArgs::Res { cookie, stat } => {
                w.opaque(cookie);
                w.u32(*stat as u32);
            }
            NlmArgs::FreeAll { name, state } => {
                w.opaque(name);
                w.u32(*state);
            }
        }
    }
}

/// Results of NLM procedures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NlmReply {
    Void,
    /// nlm4_testres.
    Test {
        cookie: Bytes,
        stat: Nlm4Stat,
        holder: Option<Nlm4Holder>,
    },
    /// nlm4_res.
    Res {
        cookie: Bytes,
        stat: Nlm4Stat,
    },
}

impl Encode for NlmReply {
    fn encode(&self, w: &mut Writer) {
        match self {
            NlmReply::Void => {}
            NlmReply::Test {
                cookie,
                stat,
                holder,
            } => {
                w.opaque(cookie);
                w.u32(*stat as u32);
                if let (Nlm4Stat::Denied, Some(h)) = (stat, holder) {
                    w.bool(h.exclusive);
                    w.u32(h.svid);
                    w.opaque(&h.oh);
                    w.u64(h.offset);
                    w.u64(h.len);
                }
            }
            NlmReply::Res { cookie, stat } => {
                w.opaque(cookie);
                w.u32(*stat as u32);
            }
        }
    }
}

/// Decodes an nlm4_res (the reply to a GRANTED callback we sent).
pub fn decode_res(r: &mut Reader) -> Result<(Bytes, Nlm4Stat)> {
    Ok((r.opaque(MAXNETOBJ_SZ)?, Nlm4Stat::from_u32(r.u32()?)?))
}

/// NSM arguments we decode (as a server's status monitor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NsmArgs {
    Null,
    /// SM_STAT: sm_name.
    Stat {
        name: Bytes,
    },
    /// SM_MON: only a local lockd may ask; we refuse.
    Mon,
    /// SM_UNMON, SM_UNMON_ALL, SM_SIMU_CRASH: likewise local-only.
    Local,
    /// SM_NOTIFY: stat_chge, sent by a host that rebooted.
    Notify {
        mon_name: Bytes,
        state: u32,
    },
}

impl NsmArgs {
    pub fn decode(proc_: u32, r: &mut Reader) -> Result<Option<NsmArgs>> {
        use smproc::*;
        let args = match proc_ {
            NULL => NsmArgs::Null,
            STAT => NsmArgs::Stat {
                name: r.opaque(SM_MAXSTRLEN)?,
            },
            // The bodies of these are not needed: we refuse them. Skip what remains.
            MON => {
                let _ = r.rest();
                return Ok(Some(NsmArgs::Mon));
            }
            UNMON | UNMON_ALL | SIMU_CRASH => {
                let _ = r.rest();
                return Ok(Some(NsmArgs::Local));
            }
            NOTIFY => NsmArgs::Notify {
                mon_name: r.opaque(SM_MAXSTRLEN)?,
                state: r.u32()?,
            },
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(args))
    }
}

/// Encodes SM_NOTIFY arguments (stat_chge), which we send to clients after a restart.
pub fn encode_notify(w: &mut Writer, mon_name: &[u8], state: u32) {
    w.opaque(mon_name);
    w.u32(state);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Nlm4Lock {
        Nlm4Lock {
            caller_name: Bytes::from_static(b"gpu01"),
            fh: Bytes::from_static(&[3u8; 40]),
            oh: Bytes::from_static(b"owner"),
            svid: 4242,
            offset: 0,
            len: 0,
        }
    }

    #[test]
    fn every_nlm_argument_type_round_trips() {
        let cookie = Bytes::from_static(b"ck");
        let cases = [
            (nlmproc::NULL, NlmArgs::Null),
            (
                nlmproc::TEST,
                NlmArgs::Test {
                    cookie: cookie.clone(),
                    exclusive: true,
                    lock: lock(),
                },
            ),
            (
                nlmproc::LOCK,
                NlmArgs::Lock {
                    cookie: cookie.clone(),
                    block: true,
                    exclusive: false,
                    lock: lock(),
                    reclaim: true,
                    state: 3,
                },
            ),
            (
                nlmproc::CANCEL,
                NlmArgs::Cancel {
                    cookie: cookie.clone(),
                    block: true,
                    exclusive: true,
                    lock: lock(),
                },
            ),
            (
                nlmproc::UNLOCK,
                NlmArgs::Unlock {
                    cookie: cookie.clone(),
                    lock: lock(),
                },
            ),
            (
                nlmproc::GRANTED_RES,
                NlmArgs::Res {
                    cookie: cookie.clone(),
                    stat: Nlm4Stat::Granted,
                },
            ),
            (
                nlmproc::FREE_ALL,
                NlmArgs::FreeAll {
                    name: Bytes::from_static(b"gpu01"),
                    state: 7,
                },
            ),
        ];
        for (p, args) in cases {
            let mut w = Writer::new();
            args.encode(&mut w);
            let back = NlmArgs::decode(p, &mut Reader::new(w.into_bytes()));
            assert_eq!(back, Ok(Some(args)));
        }
    }

    #[test]
    fn caller_name_over_1024_bytes_is_garbage() {
        let mut l = lock();
        l.caller_name = Bytes::from(vec![b'a'; 1025]);
        let mut w = Writer::new();
        NlmArgs::Unlock {
            cookie: Bytes::new(),
            lock: l,
        }
        .encode(&mut w);
        assert!(NlmArgs::decode(nlmproc::UNLOCK, &mut Reader::new(w.into_bytes())).is_err());
    }

    #[test]
    fn denied_test_reply_carries_the_holder() {
        let mut w = Writer::new();
        NlmReply::Test {
            cookie: Bytes::new(),
            stat: Nlm4Stat::Denied,
            holder: Some(Nlm4Holder {
                exclusive: true,
                svid: 1,
                oh: Bytes::from_static(b"o"),
                offset: 0,
                len: 10,
            }),
        }
        .encode(&mut w);
        // cookie(4) stat(4) exclusive(4) svid(4) oh(8) offset(8) len(8)
        assert_eq!(w.len(), 40);
    }

    #[test]
    fn sm_notify_round_trips() {
        let mut w = Writer::new();
        encode_notify(&mut w, b"10.77.0.1", 5);
        let back = NsmArgs::decode(smproc::NOTIFY, &mut Reader::new(w.into_bytes()));
        assert_eq!(
            back,
            Ok(Some(NsmArgs::Notify {
                mon_name: Bytes::from_static(b"10.77.0.1"),
                state: 5
            }))
        );
    }
}
