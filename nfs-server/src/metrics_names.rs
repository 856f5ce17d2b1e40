//! Fixed names of programs and procedures for metric labels. Numbers from the wire map to a
//! bounded set of names ("other", "UNKNOWN"), so a client cannot create label values.

use nfs_proto::{mount, nlm, portmap, v3};

pub fn names(prog: u32, vers: u32, proc_: u32) -> (&'static str, &'static str) {
    fn pick(table: &[&'static str], proc_: u32) -> &'static str {
        table.get(proc_ as usize).copied().unwrap_or("UNKNOWN")
    }
    match prog {
        v3::PROGRAM if vers == 4 => ("nfs4", pick(&["NULL", "COMPOUND"], proc_)),
        v3::PROGRAM => ("nfs3", v3::proc3::name(proc_)),
        mount::PROGRAM => (
            "mount3",
            pick(&["NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"], proc_),
        ),
        nlm::NLM_PROGRAM => (
            "nlm4",
            pick(
                &[
                    "NULL",
                    "TEST",
                    "LOCK",
                    "CANCEL",
                    "UNLOCK",
                    "GRANTED",
                    "TEST_MSG",
                    "LOCK_MSG",
                    "CANCEL_MSG",
                    "UNLOCK_MSG",
                    "GRANTED_MSG",
                    "TEST_RES",
                    "LOCK_RES",
                    "CANCEL_RES",
                    "UNLOCK_RES",
                    "GRANTED_RES",
                    "UNKNOWN",
                    "UNKNOWN",
                    "UNKNOWN",
                    "UNKNOWN",
                    "SHARE",
                    "UNSHARE",
                    "NM_LOCK",
                    "FREE_ALL",
                ],
                proc_,
            ),
        ),
        nlm::NSM_PROGRAM => (
            "nsm1",
            pick(
                &[
                    "NULL",
                    "STAT",
                    "MON",
                    "UNMON",
                    "UNMON_ALL",
                    "SIMU_CRASH",
                    "NOTIFY",
                ],
                proc_,
            ),
        ),
        portmap::PROGRAM => (
            "portmap",
            pick(
                &[
                    "NULL",
                    "SET",
                    "UNSET",
                    "GETPORT",
                    "DUMP",
                    "CALLIT",
                    "GETTIME",
                    "UADDR2TADDR",
                    "TADDR2UADDR",
                    "GETVERSADDR",
                ],
                proc_,
            ),
        ),
        _ => ("other", "UNKNOWN"),
    }
}
