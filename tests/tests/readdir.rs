//! Directory listing over many small pages: every name exactly once, "." and ".." included,
//! cookies that stay valid while the directory changes, and READDIRPLUS handles that the
//! server accepts. Uses the default (nvme) store.

use std::collections::{BTreeSet, HashMap};

use sluice_tests::{nfsstat, Entry, RpcClient, Sluice};

const FILES: usize = 300;
const PAGE: u32 = 512;

fn name(i: usize) -> String {
    format!("file-{i:03}")
}

fn populated() -> (Sluice, RpcClient, nfs_proto::v3::NfsFh3) {
    let s = Sluice::start();
    let (mut c, root) = s.mounted("/");
    let dir = c.mkdir(&root, "many").unwrap();
    for i in 0..FILES {
        c.create(&dir, &name(i)).unwrap();
    }
    (s, c, dir)
}

/// Names seen, failing on any duplicate.
fn unique_names(entries: &[Entry]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for e in entries {
        assert!(seen.insert(e.name.clone()), "{:?} listed twice", e.name);
    }
    seen
}

#[test]
fn small_pages_list_every_name_exactly_once_with_dot_and_dotdot() {
    let (_s, mut c, dir) = populated();
    let mut pages = 0;
    let (mut cookie, mut verf, mut all) = (0u64, [0u8; 8], Vec::new());
    loop {
        pages += 1;
        assert!(pages < 1000, "no eof after 1000 pages");
        let p = c.readdir(&dir, cookie, verf, PAGE).unwrap();
        assert!(!p.entries.is_empty() || p.eof, "empty page without eof");
        verf = p.cookieverf;
        if let Some(l) = p.entries.last() {
            cookie = l.cookie;
        }
        all.extend(p.entries);
        if p.eof {
            break;
        }
    }
    assert!(
        pages > 10,
        "{PAGE}-byte pages should need many calls, got {pages}"
    );
    let names = unique_names(&all);
    assert_eq!(names.len(), FILES + 2);
    assert!(names.contains(".") && names.contains(".."));
    for i in 0..FILES {
        assert!(names.contains(&name(i)), "{} missing", name(i));
    }
    let cookies: BTreeSet<u64> = all.iter().map(|e| e.cookie).collect();
    assert_eq!(cookies.len(), all.len(), "cookies are distinct");
    assert!(!cookies.contains(&0), "cookie 0 means 'start'");
}

#[test]
fn cookies_stay_valid_when_entries_are_removed_mid_listing() {
    let (_s, mut c, dir) = populated();
    let (mut cookie, mut verf, mut seen) = (0u64, [0u8; 8], Vec::new());
    for _ in 0..3 {
        let p = c.readdir(&dir, cookie, verf, PAGE).unwrap();
        assert!(!p.eof);
        verf = p.cookieverf;
        cookie = p.entries.last().unwrap().cookie;
        seen.extend(p.entries);
    }
    let seen_names = unique_names(&seen);
    // Remove the entry we resume after, some already listed, and some not yet listed.
    let resume_name = seen.last().unwrap().name.clone();
    let mut removed = BTreeSet::from([resume_name.clone()]);
    for i in (0..FILES).step_by(7) {
        removed.insert(name(i));
    }
    for n in &removed {
        c.remove(&dir, n).unwrap();
    }
    for _ in 0..1000 {
        let p = c
            .readdir(&dir, cookie, verf, PAGE)
            .unwrap_or_else(|e| panic!("READDIR after removals (cookie {cookie}): {e}"));
        verf = p.cookieverf;
        if let Some(l) = p.entries.last() {
            cookie = l.cookie;
        }
        seen.extend(p.entries);
        if p.eof {
            break;
        }
    }
    let names = unique_names(&seen);
    for i in 0..FILES {
        let n = name(i);
        if removed.contains(&n) {
            assert!(
                seen_names.contains(&n) || !names.contains(&n),
                "{n} was removed before the listing reached it but still appeared"
            );
        } else {
            assert!(names.contains(&n), "{n} missing after removals");
        }
    }
    assert!(names.contains(&resume_name));
    // A fresh listing agrees.
    let fresh = unique_names(&c.list_dir(&dir, PAGE).unwrap());
    assert_eq!(fresh.len(), FILES + 2 - removed.len());
    assert!(fresh.is_disjoint(&removed));
}

#[test]
fn readdirplus_handles_are_accepted_by_getattr() {
    let (_s, mut c, dir) = populated();
    let (mut cookie, mut verf, mut all) = (0u64, [0u8; 8], Vec::new());
    for _ in 0..1000 {
        let p = c.readdirplus(&dir, cookie, verf, 512, 4096).unwrap();
        verf = p.cookieverf;
        if let Some(l) = p.entries.last() {
            cookie = l.cookie;
        }
        all.extend(p.entries);
        if p.eof {
            break;
        }
    }
    let names = unique_names(&all);
    assert_eq!(names.len(), FILES + 2);
    let by_name: HashMap<_, _> = all.iter().map(|e| (e.name.as_str(), e)).collect();
    for (n, e) in &by_name {
        let fh = e.fh.as_ref().unwrap_or_else(|| panic!("{n}: no handle"));
        let a = c.getattr(fh).unwrap_or_else(|s| panic!("{n}: GETATTR {s}"));
        assert_eq!(a.fileid, e.fileid, "{n}");
        if let Some(attr) = &e.attr {
            assert_eq!(attr.fileid, e.fileid, "{n}");
        }
        if n.starts_with("file-") {
            assert_eq!(a.ftype, 1, "{n} is a regular file");
            assert_eq!(
                c.lookup(&dir, n).unwrap(),
                *fh,
                "{n}: same handle as LOOKUP"
            );
        }
    }
    assert_eq!(by_name["."].fh.as_ref(), Some(&dir));
}

#[test]
fn foreign_cookie_verifier_is_bad_cookie_and_readdir_of_a_file_is_notdir() {
    let (_s, mut c, dir) = populated();
    let p = c.readdir(&dir, 0, [0; 8], PAGE).unwrap();
    let cookie = p.entries.last().unwrap().cookie;
    assert_eq!(
        c.readdir(&dir, cookie, *b"garbage!", PAGE).map(|_| ()),
        Err(nfsstat::BAD_COOKIE)
    );
    let f = c.lookup(&dir, &name(0)).unwrap();
    assert_eq!(
        c.readdir(&f, 0, [0; 8], PAGE).map(|_| ()),
        Err(nfsstat::NOTDIR)
    );
}
