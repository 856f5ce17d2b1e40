//! The contract of `backend::Store`, checked against every implementation.
//!
//! Each check is a generic `async fn name<S: Store>(s: &S)`; the `conformance!` macro at the end
//! instantiates it once per store (`mem::name`, `local::name`, `nvme::name`), so both stores pass the very same
//! suite. Tests that need a restart live in `local_only`.

use backend::local::LocalStore;
use backend::mem::MemStore;
use backend::{
    AccessMask, Attr, CreateMode, Cred, Error, FileId, FileType, NodeKind, SetAttr, SetTime,
    Stability, Store, Timestamp, NAME_LEN_MAX, PATH_LEN_MAX,
};
use bytes::Bytes;

fn root() -> Cred {
    Cred::root()
}

fn user(uid: u32) -> Cred {
    Cred {
        uid,
        gid: uid,
        groups: Vec::new(),
    }
}

fn mode(bits: u32) -> SetAttr {
    SetAttr {
        mode: Some(bits),
        ..SetAttr::default()
    }
}

async fn create_file<S: Store>(s: &S, cred: &Cred, dir: FileId, name: &str) -> Attr {
    s.create(
        cred,
        dir,
        name.as_bytes(),
        NodeKind::Regular,
        SetAttr::default(),
        CreateMode::Guarded,
    )
    .await
    .unwrap()
    .0
}

async fn create_dir<S: Store>(s: &S, cred: &Cred, dir: FileId, name: &str, bits: u32) -> Attr {
    s.create(
        cred,
        dir,
        name.as_bytes(),
        NodeKind::Directory,
        mode(bits),
        CreateMode::Guarded,
    )
    .await
    .unwrap()
    .0
}

/// A directory anyone may create in, for tests that act as ordinary users.
async fn shared_dir<S: Store>(s: &S) -> FileId {
    create_dir(s, &root(), s.root(), "shared", 0o777).await.id
}

async fn write<S: Store>(s: &S, cred: &Cred, id: FileId, offset: u64, data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    s.write(cred, id, offset, data, Stability::Unstable)
        .await
        .unwrap();
}

async fn read_all<S: Store>(s: &S, id: FileId) -> Vec<u8> {
    s.read(&root(), id, 0, 1 << 20).await.unwrap().data.to_vec()
}

async fn names<S: Store>(s: &S, dir: FileId) -> Vec<Vec<u8>> {
    let page = s.readdir(&root(), dir, 0, 1000, false).await.unwrap();
    assert!(page.eof);
    page.entries.into_iter().map(|e| e.name).collect()
}

// ---- create, lookup, getattr ----

async fn created_file_is_found_by_lookup_and_getattr<S: Store>(s: &S) {
    let attr = create_file(s, &user(5), shared_dir(s).await, "f").await;
    let dir = s.lookup(&root(), s.root(), b"shared").await.unwrap().id;
    assert_eq!(s.lookup(&root(), dir, b"f").await.unwrap(), attr);
    assert_eq!(s.getattr(attr.id).await.unwrap(), attr);
    assert_eq!(
        (attr.file_type, attr.mode, attr.nlink),
        (FileType::Regular, 0o644, 1)
    );
    assert_eq!((attr.uid, attr.gid, attr.size), (5, 5, 0));
}

async fn lookup_of_missing_name_fails_with_not_found<S: Store>(s: &S) {
    assert_eq!(
        s.lookup(&root(), s.root(), b"nope").await,
        Err(Error::NotFound)
    );
}

async fn lookup_of_dot_and_dot_dot_return_the_directory_and_its_parent<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await;
    assert_eq!(s.lookup(&root(), dir.id, b".").await.unwrap().id, dir.id);
    assert_eq!(s.lookup(&root(), dir.id, b"..").await.unwrap().id, s.root());
    assert_eq!(s.parent(&root(), dir.id).await.unwrap().id, s.root());
    assert_eq!(s.parent(&root(), s.root()).await.unwrap().id, s.root());
}

// Lookups may be answered from a cache of names; these make sure it never answers stale.

async fn a_looked_up_name_is_not_found_after_remove_and_a_recreated_one_is_the_new_file<
    S: Store,
>(
    s: &S,
) {
    let r = s.root();
    let old = create_file(s, &root(), r, "f").await;
    assert_eq!(s.lookup(&root(), r, b"f").await.unwrap().id, old.id);
    s.remove(&root(), r, b"f").await.unwrap();
    assert_eq!(s.lookup(&root(), r, b"f").await, Err(Error::NotFound));
    let new = create_file(s, &root(), r, "f").await;
    assert_ne!(new.id, old.id);
    assert_eq!(s.lookup(&root(), r, b"f").await.unwrap().id, new.id);
}

async fn a_looked_up_name_follows_rename_including_over_an_existing_target<S: Store>(s: &S) {
    let r = s.root();
    let d = create_dir(s, &root(), r, "d", 0o755).await.id;
    let a = create_file(s, &root(), r, "a").await;
    let b = create_file(s, &root(), d, "b").await;
    assert_eq!(s.lookup(&root(), r, b"a").await.unwrap().id, a.id);
    assert_eq!(s.lookup(&root(), d, b"b").await.unwrap().id, b.id);
    s.rename(&root(), r, b"a", d, b"b").await.unwrap();
    assert_eq!(s.lookup(&root(), r, b"a").await, Err(Error::NotFound));
    assert_eq!(s.lookup(&root(), d, b"b").await.unwrap().id, a.id);
    assert_eq!(s.getattr(b.id).await, Err(Error::Stale));
}

async fn a_cached_lookup_still_checks_search_permission_on_the_directory<S: Store>(s: &S) {
    let d = create_dir(s, &root(), s.root(), "private", 0o700).await.id;
    let f = create_file(s, &root(), d, "f").await;
    assert_eq!(s.lookup(&root(), d, b"f").await.unwrap().id, f.id);
    assert_eq!(s.lookup(&user(5), d, b"f").await, Err(Error::Access));
    s.setattr(&root(), d, mode(0o711), None).await.unwrap();
    assert_eq!(s.lookup(&user(5), d, b"f").await.unwrap().id, f.id);
    s.setattr(&root(), d, mode(0o700), None).await.unwrap();
    assert_eq!(s.lookup(&user(5), d, b"f").await, Err(Error::Access));
}

async fn every_node_kind_is_created_with_its_type_and_attributes<S: Store>(s: &S) {
    let r = s.root();
    let kinds = [
        ("dir", NodeKind::Directory, FileType::Directory, 0o755),
        (
            "link",
            NodeKind::Symlink {
                target: b"a/b".to_vec(),
            },
            FileType::Symlink,
            0o777,
        ),
        (
            "blk",
            NodeKind::BlockDevice { rdev: (8, 1) },
            FileType::BlockDevice,
            0o644,
        ),
        (
            "chr",
            NodeKind::CharDevice { rdev: (4, 2) },
            FileType::CharDevice,
            0o644,
        ),
        ("sock", NodeKind::Socket, FileType::Socket, 0o644),
        ("fifo", NodeKind::Fifo, FileType::Fifo, 0o644),
    ];
    for (name, kind, file_type, default_mode) in kinds {
        let guarded = CreateMode::Guarded;
        let (attr, _) = s
            .create(
                &root(),
                r,
                name.as_bytes(),
                kind.clone(),
                SetAttr::default(),
                guarded,
            )
            .await
            .unwrap();
        assert_eq!(
            (attr.file_type, attr.mode),
            (file_type, default_mode),
            "{name}"
        );
        match kind {
            NodeKind::BlockDevice { rdev } | NodeKind::CharDevice { rdev } => {
                assert_eq!(attr.rdev, rdev)
            }
            NodeKind::Symlink { target } => {
                let (read, _) = s.readlink(&root(), attr.id).await.unwrap();
                assert_eq!((read, attr.size), (target, 3));
            }
            _ => {}
        }
    }
    let file = create_file(s, &root(), r, "f").await;
    assert_eq!(
        s.readlink(&root(), file.id).await,
        Err(Error::NotSymlink(FileType::Regular)),
        "the error names the object's type, so no caller asks again"
    );
}

async fn create_applies_mode_without_umask_and_other_attributes<S: Store>(s: &S) {
    let attr = SetAttr {
        mode: Some(0o600),
        size: Some(10),
        mtime: SetTime::Client(Timestamp {
            seconds: 1000,
            nanoseconds: 5,
        }),
        ..SetAttr::default()
    };
    let (file, _) = s
        .create(
            &root(),
            s.root(),
            b"f",
            NodeKind::Regular,
            attr,
            CreateMode::Guarded,
        )
        .await
        .unwrap();
    assert_eq!((file.mode, file.size), (0o600, 10));
    assert_eq!(
        file.mtime,
        Timestamp {
            seconds: 1000,
            nanoseconds: 5
        }
    );
    let bad = SetAttr {
        uid: Some(0),
        ..SetAttr::default()
    };
    let result = s
        .create(
            &user(5),
            shared_dir(s).await,
            b"g",
            NodeKind::Regular,
            bad,
            CreateMode::Guarded,
        )
        .await;
    assert_eq!(result.map(|_| ()), Err(Error::Perm));
}

// ---- create modes ----

async fn guarded_create_of_existing_name_fails_with_exists<S: Store>(s: &S) {
    create_file(s, &root(), s.root(), "f").await;
    let again = s
        .create(
            &root(),
            s.root(),
            b"f",
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await;
    assert_eq!(again.map(|_| ()), Err(Error::Exists));
    let dir = s
        .create(
            &root(),
            s.root(),
            b"f",
            NodeKind::Directory,
            SetAttr::default(),
            CreateMode::Unchecked,
        )
        .await;
    assert_eq!(dir.map(|_| ()), Err(Error::Exists));
}

async fn unchecked_create_of_existing_file_succeeds_and_applies_the_size<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 0, b"hello world").await;
    let attr = SetAttr {
        size: Some(5),
        ..SetAttr::default()
    };
    let (again, _) = s
        .create(
            &root(),
            s.root(),
            b"f",
            NodeKind::Regular,
            attr,
            CreateMode::Unchecked,
        )
        .await
        .unwrap();
    assert_eq!((again.id, again.size), (file.id, 5));
    assert_eq!(read_all(s, file.id).await, b"hello");
}

async fn unchecked_create_over_a_directory_fails_with_exists<S: Store>(s: &S) {
    create_dir(s, &root(), s.root(), "d", 0o755).await;
    let result = s
        .create(
            &root(),
            s.root(),
            b"d",
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Unchecked,
        )
        .await;
    assert_eq!(result.map(|_| ()), Err(Error::Exists));
}

async fn exclusive_create_retried_with_the_same_verifier_returns_the_same_file<S: Store>(s: &S) {
    let mode = CreateMode::Exclusive(*b"verifier");
    let cred = root();
    let create = || {
        s.create(
            &cred,
            s.root(),
            b"f",
            NodeKind::Regular,
            SetAttr::default(),
            mode,
        )
    };
    let (first, _) = create().await.unwrap();
    let (second, _) = create().await.unwrap();
    assert_eq!(first.id, second.id);
    let other = CreateMode::Exclusive(*b"another!");
    let result = s
        .create(
            &root(),
            s.root(),
            b"f",
            NodeKind::Regular,
            SetAttr::default(),
            other,
        )
        .await;
    assert_eq!(result.map(|_| ()), Err(Error::Exists));
}

async fn exclusive_verifier_is_forgotten_after_setattr<S: Store>(s: &S) {
    let mode = CreateMode::Exclusive(*b"verifier");
    let cred = root();
    let create = || {
        s.create(
            &cred,
            s.root(),
            b"f",
            NodeKind::Regular,
            SetAttr::default(),
            mode,
        )
    };
    let (file, _) = create().await.unwrap();
    s.setattr(&root(), file.id, self::mode(0o600), None)
        .await
        .unwrap();
    assert_eq!(create().await.map(|_| ()), Err(Error::Exists));
}

// ---- read and write ----

async fn read_returns_written_bytes_and_eof_at_the_end<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let written = s
        .write(
            &root(),
            file.id,
            0,
            Bytes::from_static(b"0123456789"),
            Stability::Unstable,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            written.count,
            written.wcc.before.size,
            written.wcc.after.size
        ),
        (10, 0, 10)
    );
    let head = s.read(&root(), file.id, 0, 4).await.unwrap();
    assert_eq!((&head.data[..], head.eof), (&b"0123"[..], false));
    let tail = s.read(&root(), file.id, 4, 100).await.unwrap();
    assert_eq!((&tail.data[..], tail.eof), (&b"456789"[..], true));
    assert_eq!(tail.attr.size, 10);
}

async fn read_past_the_end_returns_no_data_and_eof<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 0, b"abc").await;
    let past = s.read(&root(), file.id, 100, 10).await.unwrap();
    assert!(past.data.is_empty() && past.eof);
    let empty = create_file(s, &root(), s.root(), "e").await;
    let nothing = s.read(&root(), empty.id, 0, 10).await.unwrap();
    assert!(nothing.data.is_empty() && nothing.eof);
}

async fn a_hole_reads_as_zeros<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 100_000, b"end").await;
    let data = read_all(s, file.id).await;
    assert_eq!(data.len(), 100_003);
    assert!(data[..100_000].iter().all(|&b| b == 0));
    assert_eq!(&data[100_000..], b"end");
}

async fn overwrite_in_the_middle_keeps_the_rest<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 0, b"aaaaaaaaaa").await;
    write(s, &root(), file.id, 3, b"bbb").await;
    assert_eq!(read_all(s, file.id).await, b"aaabbbaaaa");
}

async fn unstable_write_then_commit_returns_the_new_size<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let result = s
        .write(
            &root(),
            file.id,
            0,
            Bytes::from(vec![7u8; 5000]),
            Stability::Unstable,
        )
        .await
        .unwrap();
    assert_eq!(result.committed, Stability::Unstable);
    let attr = s.commit(file.id, 0, 0).await.unwrap();
    assert_eq!(attr.size, 5000);
    assert!(attr.mtime >= file.mtime && attr.change > file.change);
}

async fn stable_writes_report_the_stability_asked_for<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    for stability in [Stability::DataSync, Stability::FileSync] {
        let data = Bytes::from_static(b"x");
        let result = s.write(&root(), file.id, 0, data, stability).await.unwrap();
        assert!(result.committed >= stability);
    }
}

async fn io_on_a_directory_or_symlink_fails_with_the_objects_type<S: Store>(s: &S) {
    let data = Bytes::from_static(b"x");
    let result = s
        .write(&root(), s.root(), 0, data.clone(), Stability::Unstable)
        .await;
    let dir = Err(Error::NotRegular(FileType::Directory));
    assert_eq!(result.map(|_| ()), dir);
    assert_eq!(s.read(&root(), s.root(), 0, 1).await.map(|_| ()), dir);
    let (link, _) = s
        .create(
            &root(),
            s.root(),
            b"l",
            NodeKind::Symlink {
                target: b"target".to_vec(),
            },
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await
        .unwrap();
    let symlink = Err(Error::NotRegular(FileType::Symlink));
    let result = s
        .write(&root(), link.id, 0, data, Stability::Unstable)
        .await;
    assert_eq!(result.map(|_| ()), symlink);
    assert_eq!(s.read(&root(), link.id, 0, 1).await.map(|_| ()), symlink);
}

async fn write_beyond_the_size_limit_fails_with_file_too_big<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let data = Bytes::from_static(b"x");
    let result = s
        .write(
            &root(),
            file.id,
            backend::FILE_SIZE_MAX,
            data,
            Stability::Unstable,
        )
        .await;
    assert_eq!(result.map(|_| ()), Err(Error::FileTooBig));
}

// ---- setattr ----

async fn setattr_size_truncates_and_extends_with_zeros<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 0, b"0123456789").await;
    let size = |n| SetAttr {
        size: Some(n),
        ..SetAttr::default()
    };
    let wcc = s.setattr(&root(), file.id, size(4), None).await.unwrap();
    assert_eq!((wcc.before.size, wcc.after.size), (10, 4));
    s.setattr(&root(), file.id, size(8), None).await.unwrap();
    assert_eq!(read_all(s, file.id).await, b"0123\0\0\0\0");
}

async fn setattr_with_a_stale_guard_fails_with_guard_mismatch_and_changes_nothing<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let wrong = Timestamp {
        seconds: 1,
        nanoseconds: 0,
    };
    let result = s.setattr(&root(), file.id, mode(0o600), Some(wrong)).await;
    assert_eq!(result.map(|_| ()), Err(Error::GuardMismatch));
    assert_eq!(s.getattr(file.id).await.unwrap().mode, 0o644);
    s.setattr(&root(), file.id, mode(0o600), Some(file.ctime))
        .await
        .unwrap();
    assert_eq!(s.getattr(file.id).await.unwrap().mode, 0o600);
}

async fn setattr_changes_ctime_and_explicit_times<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let t = Timestamp {
        seconds: 42,
        nanoseconds: 7,
    };
    let attr = SetAttr {
        atime: SetTime::Client(t),
        mtime: SetTime::Client(t),
        ..SetAttr::default()
    };
    let after = s.setattr(&root(), file.id, attr, None).await.unwrap().after;
    assert_eq!((after.atime, after.mtime), (t, t));
    assert!(after.ctime >= file.ctime && after.change > file.change);
}

async fn truncating_a_directory_fails_with_is_dir<S: Store>(s: &S) {
    let attr = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(
        s.setattr(&root(), s.root(), attr, None).await.map(|_| ()),
        Err(Error::IsDir)
    );
}

// ---- permissions ----

async fn non_owner_without_permission_is_denied_read_write_and_truncate<S: Store>(s: &S) {
    let dir = shared_dir(s).await;
    let file = create_file(s, &user(5), dir, "f").await;
    s.setattr(&user(5), file.id, mode(0o600), None)
        .await
        .unwrap();
    let other = user(6);
    assert_eq!(
        s.read(&other, file.id, 0, 1).await.map(|_| ()),
        Err(Error::Access)
    );
    let data = Bytes::from_static(b"x");
    let written = s.write(&other, file.id, 0, data, Stability::Unstable).await;
    assert_eq!(written.map(|_| ()), Err(Error::Access));
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(
        s.setattr(&other, file.id, truncate, None).await.map(|_| ()),
        Err(Error::Access)
    );
}

async fn group_members_get_the_group_bits<S: Store>(s: &S) {
    let dir = shared_dir(s).await;
    let file = create_file(s, &user(5), dir, "f").await;
    s.setattr(&user(5), file.id, mode(0o640), None)
        .await
        .unwrap();
    let member = Cred {
        uid: 6,
        gid: 100,
        groups: vec![5],
    };
    assert!(s.read(&member, file.id, 0, 1).await.is_ok());
    assert_eq!(
        s.read(&user(7), file.id, 0, 1).await.map(|_| ()),
        Err(Error::Access)
    );
}

async fn owner_may_read_and_write_a_file_whose_mode_denies_it<S: Store>(s: &S) {
    let dir = shared_dir(s).await;
    let (file, _) = s
        .create(
            &user(5),
            dir,
            b"f",
            NodeKind::Regular,
            mode(0o000),
            CreateMode::Guarded,
        )
        .await
        .unwrap();
    let data = Bytes::from_static(b"x");
    s.write(&user(5), file.id, 0, data, Stability::Unstable)
        .await
        .unwrap();
    assert_eq!(
        s.read(&user(5), file.id, 0, 1).await.unwrap().data,
        Bytes::from_static(b"x")
    );
    let (granted, _) = s
        .access(&user(5), file.id, AccessMask(AccessMask::READ))
        .await
        .unwrap();
    assert_eq!(granted.0, 0, "ACCESS itself stays POSIX");
}

async fn root_bypasses_read_and_write_permission_but_not_execute<S: Store>(s: &S) {
    let dir = shared_dir(s).await;
    let file = create_file(s, &user(5), dir, "f").await;
    s.setattr(&user(5), file.id, mode(0o000), None)
        .await
        .unwrap();
    s.write(
        &root(),
        file.id,
        0,
        Bytes::from_static(b"x"),
        Stability::Unstable,
    )
    .await
    .unwrap();
    assert!(s.read(&root(), file.id, 0, 1).await.is_ok());
    let all = AccessMask(AccessMask::READ | AccessMask::MODIFY | AccessMask::EXECUTE);
    let (granted, _) = s.access(&root(), file.id, all).await.unwrap();
    assert_eq!(granted.0, AccessMask::READ | AccessMask::MODIFY);
    s.setattr(&root(), file.id, mode(0o100), None)
        .await
        .unwrap();
    let (granted, _) = s.access(&root(), file.id, all).await.unwrap();
    assert_eq!(granted.0, all.0);
}

async fn access_reports_only_the_rights_held<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await;
    let mask = AccessMask(0x3f);
    let (granted, attr) = s.access(&user(5), dir.id, mask).await.unwrap();
    assert_eq!(granted.0, AccessMask::READ | AccessMask::LOOKUP);
    assert_eq!(attr.id, dir.id);
    let (granted, _) = s.access(&root(), dir.id, mask).await.unwrap();
    let dir_rights = AccessMask::READ
        | AccessMask::LOOKUP
        | AccessMask::MODIFY
        | AccessMask::EXTEND
        | AccessMask::DELETE;
    assert_eq!(granted.0, dir_rights);
}

async fn creating_in_a_directory_without_write_permission_fails_with_access<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await;
    let result = s
        .create(
            &user(5),
            dir.id,
            b"f",
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await;
    assert_eq!(result.map(|_| ()), Err(Error::Access));
    let locked = create_dir(s, &root(), s.root(), "locked", 0o700).await;
    assert_eq!(
        s.lookup(&user(5), locked.id, b"x").await.map(|_| ()),
        Err(Error::Access)
    );
    assert_eq!(
        s.readdir(&user(5), locked.id, 0, 10, false)
            .await
            .map(|_| ()),
        Err(Error::Access)
    );
}

async fn sticky_directory_lets_only_owners_and_root_remove_entries<S: Store>(s: &S) {
    let tmp = create_dir(s, &root(), s.root(), "tmp", 0o1777).await.id;
    create_file(s, &user(5), tmp, "mine").await;
    create_file(s, &user(5), tmp, "also-mine").await;
    assert_eq!(
        s.remove(&user(6), tmp, b"mine").await.map(|_| ()),
        Err(Error::Perm)
    );
    let renamed = s.rename(&user(6), tmp, b"mine", tmp, b"theirs").await;
    assert_eq!(renamed.map(|_| ()), Err(Error::Perm));
    s.remove(&user(5), tmp, b"mine").await.unwrap();
    s.remove(&root(), tmp, b"also-mine").await.unwrap();
}

async fn only_owner_or_root_may_chmod<S: Store>(s: &S) {
    let file = create_file(s, &user(5), shared_dir(s).await, "f").await;
    assert_eq!(
        s.setattr(&user(6), file.id, mode(0o777), None)
            .await
            .map(|_| ()),
        Err(Error::Perm)
    );
    s.setattr(&user(5), file.id, mode(0o600), None)
        .await
        .unwrap();
    s.setattr(&root(), file.id, mode(0o640), None)
        .await
        .unwrap();
    assert_eq!(s.getattr(file.id).await.unwrap().mode, 0o640);
}

async fn chmod_by_non_member_drops_setgid<S: Store>(s: &S) {
    let file = create_file(s, &user(5), shared_dir(s).await, "f").await;
    let chgrp = SetAttr {
        gid: Some(50),
        ..SetAttr::default()
    };
    s.setattr(&root(), file.id, chgrp, None).await.unwrap();
    let after = s
        .setattr(&user(5), file.id, mode(0o2755), None)
        .await
        .unwrap()
        .after;
    assert_eq!(after.mode, 0o755);
}

async fn chown_is_for_root_and_chgrp_for_owners_in_the_group<S: Store>(s: &S) {
    let owner = Cred {
        uid: 5,
        gid: 5,
        groups: vec![60],
    };
    let file = create_file(s, &owner, shared_dir(s).await, "f").await;
    let set = |uid, gid| SetAttr {
        uid,
        gid,
        ..SetAttr::default()
    };
    let give_away = s.setattr(&owner, file.id, set(Some(6), None), None).await;
    assert_eq!(give_away.map(|_| ()), Err(Error::Perm));
    let foreign_group = s.setattr(&owner, file.id, set(None, Some(70)), None).await;
    assert_eq!(foreign_group.map(|_| ()), Err(Error::Perm));
    let by_other = s.setattr(&user(6), file.id, set(None, Some(6)), None).await;
    assert_eq!(by_other.map(|_| ()), Err(Error::Perm));
    s.setattr(&owner, file.id, set(None, Some(60)), None)
        .await
        .unwrap();
    s.setattr(&root(), file.id, set(Some(9), Some(9)), None)
        .await
        .unwrap();
    let attr = s.getattr(file.id).await.unwrap();
    assert_eq!((attr.uid, attr.gid), (9, 9));
}

async fn write_by_non_root_clears_setuid_and_setgid<S: Store>(s: &S) {
    let file = create_file(s, &user(5), shared_dir(s).await, "f").await;
    s.setattr(&user(5), file.id, mode(0o6755), None)
        .await
        .unwrap();
    s.write(
        &root(),
        file.id,
        0,
        Bytes::from_static(b"x"),
        Stability::Unstable,
    )
    .await
    .unwrap();
    assert_eq!(s.getattr(file.id).await.unwrap().mode, 0o6755);
    let data = Bytes::from_static(b"y");
    let result = s
        .write(&user(5), file.id, 0, data, Stability::Unstable)
        .await
        .unwrap();
    assert_eq!(result.wcc.after.mode, 0o755);
}

async fn new_objects_take_the_group_of_a_setgid_directory<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "g", 0o2777).await.id;
    let chgrp = SetAttr {
        gid: Some(77),
        ..SetAttr::default()
    };
    s.setattr(&root(), dir, chgrp, None).await.unwrap();
    let file = create_file(s, &user(5), dir, "f").await;
    assert_eq!((file.uid, file.gid), (5, 77));
    let sub = create_dir(s, &user(5), dir, "sub", 0o755).await;
    assert_eq!((sub.gid, sub.mode), (77, 0o2755));
}

async fn setting_times_explicitly_needs_ownership_and_to_now_needs_write<S: Store>(s: &S) {
    let file = create_file(s, &user(5), shared_dir(s).await, "f").await;
    let explicit = SetAttr {
        mtime: SetTime::Client(Timestamp {
            seconds: 9,
            nanoseconds: 0,
        }),
        ..SetAttr::default()
    };
    let now = SetAttr {
        mtime: SetTime::ServerNow,
        ..SetAttr::default()
    };
    let result = s.setattr(&user(6), file.id, explicit.clone(), None).await;
    assert_eq!(result.map(|_| ()), Err(Error::Perm));
    assert_eq!(
        s.setattr(&user(6), file.id, now.clone(), None)
            .await
            .map(|_| ()),
        Err(Error::Access)
    );
    s.setattr(&user(5), file.id, mode(0o666), None)
        .await
        .unwrap();
    s.setattr(&user(6), file.id, now, None).await.unwrap();
    s.setattr(&user(5), file.id, explicit, None).await.unwrap();
}

// ---- remove, rename, link ----

async fn residency_lists_written_ranges_and_leaves_out_holes<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "sparse").await;
    write(s, &root(), file.id, 0, &[1u8; 65536]).await;
    write(s, &root(), file.id, 4 << 20, &[2u8; 65536]).await;
    s.commit(file.id, 0, 0).await.unwrap();
    let r = s.residency(file.id).await.unwrap();
    let covers = |at: u64| r.extents.iter().any(|&(o, l)| o <= at && at < o + l);
    assert!(covers(0) && covers(4 << 20), "{:?}", r.extents);
    assert!(!covers(2 << 20), "the hole is not data: {:?}", r.extents);
    // Placement comes from the metadata: a single node places every new file on itself.
    assert_eq!(r.placement, Some(backend::engine::Layout::on(1)));
    let dir = s.residency(s.root()).await;
    assert_eq!(dir, Err(Error::Invalid), "directories hold no file data");
}

async fn a_directory_s_replication_factor_reaches_files_made_below_it_and_not_files_made_before<
    S: Store,
>(
    s: &S,
) {
    let before = create_file(s, &root(), s.root(), "before").await;
    let top = create_dir(s, &root(), s.root(), "export", 0o755).await;
    let deep = create_dir(s, &root(), top.id, "a", 0o755).await;
    let deep = create_dir(s, &root(), deep.id, "b", 0o755).await;
    assert_eq!(s.replication(top.id).await, Ok(None));
    s.set_replication(top.id, Some(2)).await.unwrap();
    assert_eq!(s.replication(top.id).await, Ok(Some(2)));
    // The nearest factor up the tree decides, for directories made before it was set too.
    let file = create_file(s, &root(), deep.id, "f").await;
    assert_eq!(s.replication(file.id).await, Ok(Some(2)));
    assert_eq!(
        s.replication(deep.id).await,
        Ok(None),
        "a directory keeps its own"
    );
    let nearer = create_dir(s, &root(), deep.id, "c", 0o755).await;
    s.set_replication(nearer.id, Some(1)).await.unwrap();
    let one = create_file(s, &root(), nearer.id, "g").await;
    assert_eq!(s.replication(one.id).await, Ok(Some(1)));
    assert_eq!(s.replication(before.id).await, Ok(None));
    // Taken off: files made afterwards get the default again, earlier ones keep theirs.
    s.set_replication(top.id, None).await.unwrap();
    let after = create_file(s, &root(), deep.id, "h").await;
    assert_eq!(s.replication(after.id).await, Ok(None));
    assert_eq!(s.replication(file.id).await, Ok(Some(2)));
    // Kept with the record: still there after a rename moves the file.
    s.rename(&root(), deep.id, b"f", s.root(), b"moved")
        .await
        .unwrap();
    assert_eq!(s.replication(file.id).await, Ok(Some(2)));
    for bad in [0, backend::engine::REPLICATION_MAX + 1] {
        assert_eq!(
            s.set_replication(top.id, Some(bad)).await,
            Err(Error::Invalid)
        );
    }
    assert_eq!(
        s.set_replication(file.id, Some(2)).await,
        Err(Error::NotDir)
    );
}

async fn file_id_is_stale_after_remove<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 0, b"data").await;
    let wcc = s.remove(&root(), s.root(), b"f").await.unwrap();
    assert!(wcc.after.mtime >= wcc.before.mtime);
    assert_eq!(s.getattr(file.id).await, Err(Error::Stale));
    assert_eq!(
        s.read(&root(), file.id, 0, 10).await.map(|_| ()),
        Err(Error::Stale)
    );
    assert_eq!(
        s.lookup(&root(), s.root(), b"f").await,
        Err(Error::NotFound)
    );
    let wrong_generation = FileId {
        ino: s.root().ino,
        generation: s.root().generation + 1,
    };
    assert_eq!(s.getattr(wrong_generation).await, Err(Error::Stale));
}

async fn remove_of_a_directory_fails_with_is_dir_and_rmdir_of_a_file_with_not_dir<S: Store>(s: &S) {
    create_dir(s, &root(), s.root(), "d", 0o755).await;
    create_file(s, &root(), s.root(), "f").await;
    assert_eq!(
        s.remove(&root(), s.root(), b"d").await.map(|_| ()),
        Err(Error::IsDir)
    );
    assert_eq!(
        s.rmdir(&root(), s.root(), b"f").await.map(|_| ()),
        Err(Error::NotDir)
    );
    assert_eq!(
        s.remove(&root(), s.root(), b"none").await.map(|_| ()),
        Err(Error::NotFound)
    );
}

async fn remove_of_nonempty_directory_fails_with_not_empty<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await;
    create_file(s, &root(), dir.id, "f").await;
    assert_eq!(
        s.rmdir(&root(), s.root(), b"d").await.map(|_| ()),
        Err(Error::NotEmpty)
    );
    s.remove(&root(), dir.id, b"f").await.unwrap();
    s.rmdir(&root(), s.root(), b"d").await.unwrap();
    assert_eq!(s.getattr(dir.id).await, Err(Error::Stale));
}

async fn directory_nlink_counts_its_subdirectories<S: Store>(s: &S) {
    let before = s.getattr(s.root()).await.unwrap().nlink;
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await;
    assert_eq!(dir.nlink, 2);
    create_dir(s, &root(), dir.id, "a", 0o755).await;
    create_dir(s, &root(), dir.id, "b", 0o755).await;
    create_file(s, &root(), dir.id, "f").await;
    assert_eq!(s.getattr(dir.id).await.unwrap().nlink, 4);
    assert_eq!(s.getattr(s.root()).await.unwrap().nlink, before + 1);
    s.rmdir(&root(), dir.id, b"a").await.unwrap();
    assert_eq!(s.getattr(dir.id).await.unwrap().nlink, 3);
}

async fn directory_times_change_when_entries_change<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await;
    let (_, wcc) = s
        .create(
            &root(),
            dir.id,
            b"f",
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await
        .unwrap();
    assert_eq!(wcc.before.mtime, dir.mtime);
    assert!(wcc.after.mtime >= dir.mtime && wcc.after.change > dir.change);
}

async fn rename_within_a_directory_moves_the_entry<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "a").await;
    s.rename(&root(), s.root(), b"a", s.root(), b"b")
        .await
        .unwrap();
    assert_eq!(
        s.lookup(&root(), s.root(), b"a").await,
        Err(Error::NotFound)
    );
    assert_eq!(s.lookup(&root(), s.root(), b"b").await.unwrap().id, file.id);
    assert_eq!(names(s, s.root()).await, vec![b"b".to_vec()]);
}

async fn rename_onto_an_existing_file_replaces_it<S: Store>(s: &S) {
    let a = create_file(s, &root(), s.root(), "a").await;
    let b = create_file(s, &root(), s.root(), "b").await;
    s.rename(&root(), s.root(), b"a", s.root(), b"b")
        .await
        .unwrap();
    assert_eq!(s.lookup(&root(), s.root(), b"b").await.unwrap().id, a.id);
    assert_eq!(s.getattr(b.id).await, Err(Error::Stale));
    assert_eq!(names(s, s.root()).await, vec![b"b".to_vec()]);
}

async fn rename_of_a_directory_onto_an_empty_directory_replaces_it<S: Store>(s: &S) {
    let a = create_dir(s, &root(), s.root(), "a", 0o755).await;
    let b = create_dir(s, &root(), s.root(), "b", 0o755).await;
    let links = s.getattr(s.root()).await.unwrap().nlink;
    s.rename(&root(), s.root(), b"a", s.root(), b"b")
        .await
        .unwrap();
    assert_eq!(s.lookup(&root(), s.root(), b"b").await.unwrap().id, a.id);
    assert_eq!(s.getattr(b.id).await, Err(Error::Stale));
    assert_eq!(s.getattr(s.root()).await.unwrap().nlink, links - 1);
}

async fn rename_onto_a_nonempty_directory_fails_with_not_empty<S: Store>(s: &S) {
    create_dir(s, &root(), s.root(), "a", 0o755).await;
    let b = create_dir(s, &root(), s.root(), "b", 0o755).await;
    create_file(s, &root(), b.id, "f").await;
    let result = s.rename(&root(), s.root(), b"a", s.root(), b"b").await;
    assert_eq!(result.map(|_| ()), Err(Error::NotEmpty));
}

async fn rename_between_a_file_and_a_directory_fails_with_is_dir_or_not_dir<S: Store>(s: &S) {
    create_dir(s, &root(), s.root(), "d", 0o755).await;
    create_file(s, &root(), s.root(), "f").await;
    let r = s.root();
    assert_eq!(
        s.rename(&root(), r, b"f", r, b"d").await.map(|_| ()),
        Err(Error::IsDir)
    );
    assert_eq!(
        s.rename(&root(), r, b"d", r, b"f").await.map(|_| ()),
        Err(Error::NotDir)
    );
    assert_eq!(
        s.rename(&root(), r, b"x", r, b"y").await.map(|_| ()),
        Err(Error::NotFound)
    );
}

async fn rename_of_a_directory_into_its_own_subtree_fails_with_invalid<S: Store>(s: &S) {
    let a = create_dir(s, &root(), s.root(), "a", 0o755).await;
    let b = create_dir(s, &root(), a.id, "b", 0o755).await;
    let result = s.rename(&root(), s.root(), b"a", b.id, b"a").await;
    assert_eq!(result.map(|_| ()), Err(Error::Invalid));
    let onto_self = s.rename(&root(), s.root(), b"a", a.id, b"x").await;
    assert_eq!(onto_self.map(|_| ()), Err(Error::Invalid));
}

async fn rename_onto_itself_succeeds_and_changes_nothing<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    s.link(&root(), file.id, s.root(), b"g").await.unwrap();
    s.rename(&root(), s.root(), b"f", s.root(), b"f")
        .await
        .unwrap();
    s.rename(&root(), s.root(), b"f", s.root(), b"g")
        .await
        .unwrap();
    assert_eq!(names(s, s.root()).await, vec![b"f".to_vec(), b"g".to_vec()]);
    assert_eq!(s.getattr(file.id).await.unwrap().nlink, 2);
}

async fn rename_of_a_directory_across_parents_updates_dot_dot_and_link_counts<S: Store>(s: &S) {
    let a = create_dir(s, &root(), s.root(), "a", 0o755).await;
    let b = create_dir(s, &root(), s.root(), "b", 0o755).await;
    let c = create_dir(s, &root(), a.id, "c", 0o755).await;
    let (from, to) = s.rename(&root(), a.id, b"c", b.id, b"c2").await.unwrap();
    assert_eq!((from.after.nlink, to.after.nlink), (2, 3));
    assert_eq!(s.parent(&root(), c.id).await.unwrap().id, b.id);
    assert_eq!(s.lookup(&root(), c.id, b"..").await.unwrap().id, b.id);
    assert!(s.getattr(c.id).await.unwrap().ctime >= c.ctime);
}

async fn link_adds_a_name_and_counts_it<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 0, b"shared").await;
    let (attr, _) = s.link(&root(), file.id, s.root(), b"g").await.unwrap();
    assert_eq!(attr.nlink, 2);
    let linked = s.link(&root(), file.id, s.root(), b"g").await;
    assert_eq!(linked.map(|_| ()), Err(Error::Exists));
    s.remove(&root(), s.root(), b"f").await.unwrap();
    assert_eq!(s.getattr(file.id).await.unwrap().nlink, 1);
    assert_eq!(read_all(s, file.id).await, b"shared");
}

async fn link_to_a_directory_fails_with_perm<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await;
    let result = s.link(&root(), dir.id, s.root(), b"e").await;
    assert_eq!(result.map(|_| ()), Err(Error::Perm));
}

// ---- readdir ----

async fn readdir_pages_through_every_entry_once<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await.id;
    for i in 0..25 {
        create_file(s, &root(), dir, &format!("f{i:02}")).await;
    }
    let (mut cookie, mut seen) = (0, Vec::new());
    loop {
        let page = s.readdir(&root(), dir, cookie, 10, false).await.unwrap();
        assert!(page.entries.len() <= 10);
        seen.extend(page.entries.iter().map(|e| e.name.clone()));
        if page.eof {
            break;
        }
        cookie = page.entries.last().unwrap().cookie;
    }
    let expected: Vec<Vec<u8>> = (0..25).map(|i| format!("f{i:02}").into_bytes()).collect();
    assert_eq!(seen, expected);
}

async fn readdir_cookies_stay_valid_across_inserts_and_removals<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await.id;
    for name in ["a", "b", "c", "d"] {
        create_file(s, &root(), dir, name).await;
    }
    let page = s.readdir(&root(), dir, 0, 2, false).await.unwrap();
    assert!(!page.eof);
    let cookie = page.entries[1].cookie; // after "b"
    s.remove(&root(), dir, b"b").await.unwrap();
    s.remove(&root(), dir, b"a").await.unwrap();
    create_file(s, &root(), dir, "e").await;
    let rest = s.readdir(&root(), dir, cookie, 10, false).await.unwrap();
    let rest: Vec<&[u8]> = rest.entries.iter().map(|e| &e.name[..]).collect();
    assert_eq!(rest, vec![&b"c"[..], b"d", b"e"]);
}

async fn readdir_with_a_cookie_never_issued_fails_with_bad_cookie<S: Store>(s: &S) {
    let dir = create_dir(s, &root(), s.root(), "d", 0o755).await.id;
    create_file(s, &root(), dir, "a").await;
    let result = s.readdir(&root(), dir, 1 << 40, 10, false).await;
    assert_eq!(result.map(|_| ()), Err(Error::BadCookie));
    let empty = create_dir(s, &root(), s.root(), "e", 0o755).await.id;
    let page = s.readdir(&root(), empty, 0, 10, false).await.unwrap();
    assert!(page.entries.is_empty() && page.eof);
}

async fn readdir_with_attrs_fills_each_entrys_attributes<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let page = s.readdir(&root(), s.root(), 0, 10, true).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].id, file.id);
    assert_eq!(page.entries[0].attr.as_ref(), Some(&file));
    assert_eq!(page.dir_attr.id, s.root());
    let bare = s.readdir(&root(), s.root(), 0, 10, false).await.unwrap();
    assert_eq!(bare.entries[0].attr, None);
}

async fn readdir_of_a_file_fails_with_not_dir<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let result = s.readdir(&root(), file.id, 0, 10, false).await;
    assert_eq!(result.map(|_| ()), Err(Error::NotDir));
    assert_eq!(
        s.lookup(&root(), file.id, b"x").await.map(|_| ()),
        Err(Error::NotDir)
    );
}

// ---- names, verifier, fsstat ----

async fn invalid_names_are_rejected<S: Store>(s: &S) {
    let r = s.root();
    let long = vec![b'a'; NAME_LEN_MAX + 1];
    let cases: [(&[u8], Error); 6] = [
        (b"", Error::Invalid),
        (b".", Error::Invalid),
        (b"..", Error::Invalid),
        (b"a/b", Error::Invalid),
        (b"a\0b", Error::Invalid),
        (&long, Error::NameTooLong),
    ];
    for (name, error) in cases {
        let result = s
            .create(
                &root(),
                r,
                name,
                NodeKind::Regular,
                SetAttr::default(),
                CreateMode::Guarded,
            )
            .await;
        assert_eq!(result.map(|_| ()), Err(error), "{name:?}");
    }
    let longest = vec![b'a'; NAME_LEN_MAX];
    s.create(
        &root(),
        r,
        &longest,
        NodeKind::Regular,
        SetAttr::default(),
        CreateMode::Guarded,
    )
    .await
    .unwrap();
    let target = vec![b'a'; PATH_LEN_MAX + 1];
    let symlink = NodeKind::Symlink { target };
    let result = s
        .create(
            &root(),
            r,
            b"l",
            symlink,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await;
    assert_eq!(result.map(|_| ()), Err(Error::NameTooLong));
}

async fn write_verifier_is_stable_within_a_run<S: Store>(s: &S) {
    let before = s.write_verifier();
    let file = create_file(s, &root(), s.root(), "f").await;
    write(s, &root(), file.id, 0, b"x").await;
    s.commit(file.id, 0, 0).await.unwrap();
    assert_eq!(s.write_verifier(), before);
}

async fn fsstat_reports_plausible_space<S: Store>(s: &S) {
    let stat = s.fsstat(s.root()).await.unwrap();
    assert!(stat.total_bytes > 0 && stat.free_bytes <= stat.total_bytes);
    assert!(stat.avail_bytes <= stat.free_bytes);
}

async fn concurrent_writes_to_one_file_all_land<S: Store>(s: &S) {
    let file = create_file(s, &root(), s.root(), "f").await;
    let chunk = |i: u8| Bytes::from(vec![i; 4096]);
    let cred = root();
    let w = |i: u8| {
        s.write(
            &cred,
            file.id,
            u64::from(i) * 4096,
            chunk(i),
            Stability::Unstable,
        )
    };
    let (a, b, c, d) = tokio::join!(w(0), w(1), w(2), w(3));
    for result in [a, b, c, d] {
        result.unwrap();
    }
    assert_eq!(s.commit(file.id, 0, 0).await.unwrap().size, 4 * 4096);
    let data = read_all(s, file.id).await;
    for (i, block) in data.chunks(4096).enumerate() {
        assert!(block.iter().all(|&b| usize::from(b) == i));
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::MemStore::new()).await;
                }
            )*
        }
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::LocalStore::open(dir.path()).unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        mod nvme {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = backend::nvme::NvmeStore::open(dir.path()).unwrap();
                    super::$name(&store).await;
                }
            )*
        }
    };
}

conformance!(
    created_file_is_found_by_lookup_and_getattr,
    a_looked_up_name_is_not_found_after_remove_and_a_recreated_one_is_the_new_file,
    a_looked_up_name_follows_rename_including_over_an_existing_target,
    a_cached_lookup_still_checks_search_permission_on_the_directory,
    lookup_of_missing_name_fails_with_not_found,
    lookup_of_dot_and_dot_dot_return_the_directory_and_its_parent,
    every_node_kind_is_created_with_its_type_and_attributes,
    create_applies_mode_without_umask_and_other_attributes,
    guarded_create_of_existing_name_fails_with_exists,
    unchecked_create_of_existing_file_succeeds_and_applies_the_size,
    unchecked_create_over_a_directory_fails_with_exists,
    exclusive_create_retried_with_the_same_verifier_returns_the_same_file,
    exclusive_verifier_is_forgotten_after_setattr,
    read_returns_written_bytes_and_eof_at_the_end,
    read_past_the_end_returns_no_data_and_eof,
    a_hole_reads_as_zeros,
    overwrite_in_the_middle_keeps_the_rest,
    unstable_write_then_commit_returns_the_new_size,
    stable_writes_report_the_stability_asked_for,
    io_on_a_directory_or_symlink_fails_with_the_objects_type,
    write_beyond_the_size_limit_fails_with_file_too_big,
    setattr_size_truncates_and_extends_with_zeros,
    setattr_with_a_stale_guard_fails_with_guard_mismatch_and_changes_nothing,
    setattr_changes_ctime_and_explicit_times,
    truncating_a_directory_fails_with_is_dir,
    non_owner_without_permission_is_denied_read_write_and_truncate,
    group_members_get_the_group_bits,
    owner_may_read_and_write_a_file_whose_mode_denies_it,
    root_bypasses_read_and_write_permission_but_not_execute,
    access_reports_only_the_rights_held,
    creating_in_a_directory_without_write_permission_fails_with_access,
    sticky_directory_lets_only_owners_and_root_remove_entries,
    only_owner_or_root_may_chmod,
    chmod_by_non_member_drops_setgid,
    chown_is_for_root_and_chgrp_for_owners_in_the_group,
    write_by_non_root_clears_setuid_and_setgid,
    new_objects_take_the_group_of_a_setgid_directory,
    setting_times_explicitly_needs_ownership_and_to_now_needs_write,
    file_id_is_stale_after_remove,
    residency_lists_written_ranges_and_leaves_out_holes,
    a_directory_s_replication_factor_reaches_files_made_below_it_and_not_files_made_before,
    remove_of_a_directory_fails_with_is_dir_and_rmdir_of_a_file_with_not_dir,
    remove_of_nonempty_directory_fails_with_not_empty,
    directory_nlink_counts_its_subdirectories,
    directory_times_change_when_entries_change,
    rename_within_a_directory_moves_the_entry,
    rename_onto_an_existing_file_replaces_it,
    rename_of_a_directory_onto_an_empty_directory_replaces_it,
    rename_onto_a_nonempty_directory_fails_with_not_empty,
    rename_between_a_file_and_a_directory_fails_with_is_dir_or_not_dir,
    rename_of_a_directory_into_its_own_subtree_fails_with_invalid,
    rename_onto_itself_succeeds_and_changes_nothing,
    rename_of_a_directory_across_parents_updates_dot_dot_and_link_counts,
    link_adds_a_name_and_counts_it,
    link_to_a_directory_fails_with_perm,
    readdir_pages_through_every_entry_once,
    readdir_cookies_stay_valid_across_inserts_and_removals,
    readdir_with_a_cookie_never_issued_fails_with_bad_cookie,
    readdir_with_attrs_fills_each_entrys_attributes,
    readdir_of_a_file_fails_with_not_dir,
    invalid_names_are_rejected,
    write_verifier_is_stable_within_a_run,
    fsstat_reports_plausible_space,
    concurrent_writes_to_one_file_all_land,
);

/// Restart behavior of the local store: each test drops the store and opens the directory again.
mod local_only {
    use std::path::Path;

    use super::*;

    fn open(dir: &Path) -> LocalStore {
        LocalStore::open(dir).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_and_metadata_survive_drop_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, file, link) = {
            let s = open(tmp.path());
            let dir = create_dir(&s, &root(), s.root(), "d", 0o750).await;
            let file = create_file(&s, &root(), s.root(), "f").await;
            let data = Bytes::from_static(b"durable");
            s.write(&root(), file.id, 0, data, Stability::FileSync)
                .await
                .unwrap();
            s.rename(&root(), s.root(), b"f", dir.id, b"g")
                .await
                .unwrap();
            let target = NodeKind::Symlink {
                target: b"d/g".to_vec(),
            };
            let (link, _) = s
                .create(
                    &root(),
                    s.root(),
                    b"l",
                    target,
                    SetAttr::default(),
                    CreateMode::Guarded,
                )
                .await
                .unwrap();
            (
                s.getattr(dir.id).await.unwrap(),
                s.getattr(file.id).await.unwrap(),
                link,
            )
        };
        let s = open(tmp.path());
        assert_eq!(s.lookup(&root(), s.root(), b"d").await.unwrap(), dir);
        assert_eq!(s.lookup(&root(), dir.id, b"g").await.unwrap(), file);
        assert_eq!(read_all(&s, file.id).await, b"durable");
        assert_eq!(s.readlink(&root(), link.id).await.unwrap().0, b"d/g");
        assert_eq!(
            names(&s, s.root()).await,
            vec![b"d".to_vec(), b"l".to_vec()]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_data_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let file = {
            let s = open(tmp.path());
            let file = create_file(&s, &root(), s.root(), "f").await;
            write(&s, &root(), file.id, 0, &[9u8; 70_000]).await;
            s.commit(file.id, 0, 0).await.unwrap();
            file
        };
        let s = open(tmp.path());
        assert_eq!(s.getattr(file.id).await.unwrap().size, 70_000);
        assert_eq!(read_all(&s, file.id).await, vec![9u8; 70_000]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_verifier_changes_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let first = open(tmp.path()).write_verifier();
        let second = open(tmp.path()).write_verifier();
        assert_ne!(first, second);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn root_and_readdir_cookies_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (root_id, cookie) = {
            let s = open(tmp.path());
            for name in ["a", "b", "c"] {
                create_file(&s, &root(), s.root(), name).await;
            }
            let page = s.readdir(&root(), s.root(), 0, 1, false).await.unwrap();
            (s.root(), page.entries[0].cookie)
        };
        let s = open(tmp.path());
        assert_eq!(s.root(), root_id);
        let rest = s
            .readdir(&root(), s.root(), cookie, 10, false)
            .await
            .unwrap();
        let rest: Vec<&[u8]> = rest.entries.iter().map(|e| &e.name[..]).collect();
        assert_eq!(rest, vec![&b"b"[..], b"c"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inode_numbers_are_not_reused_after_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let removed = {
            let s = open(tmp.path());
            let file = create_file(&s, &root(), s.root(), "f").await;
            s.remove(&root(), s.root(), b"f").await.unwrap();
            file.id
        };
        let s = open(tmp.path());
        let file = create_file(&s, &root(), s.root(), "g").await;
        assert!(file.id.ino > removed.ino);
        assert_eq!(s.getattr(removed).await, Err(Error::Stale));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unstable_writes_are_flushed_when_the_store_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let file = {
            let s = open(tmp.path());
            let file = create_file(&s, &root(), s.root(), "f").await;
            write(&s, &root(), file.id, 0, b"late").await;
            file
        };
        let s = open(tmp.path());
        assert_eq!(read_all(&s, file.id).await, b"late");
    }

    /// A crash can leave bytes in a data file past the size the metadata recorded. They must
    /// not show up when the file is later extended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_past_the_recorded_size_never_reappears() {
        let tmp = tempfile::tempdir().unwrap();
        let file = {
            let s = open(tmp.path());
            let file = create_file(&s, &root(), s.root(), "f").await;
            let data = Bytes::from_static(b"0123456789");
            s.write(&root(), file.id, 0, data, Stability::FileSync)
                .await
                .unwrap();
            file
        };
        let ino = file.id.ino;
        let path = tmp
            .path()
            .join(format!("data/{:02x}/{ino:016x}", ino & 0xff));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"GARBAGEGARBAGE");
        std::fs::write(&path, bytes).unwrap();
        let s = open(tmp.path());
        assert_eq!(read_all(&s, file.id).await, b"0123456789");
        write(&s, &root(), file.id, 20, b"!").await;
        let mut expected = b"0123456789".to_vec();
        expected.extend_from_slice(&[0; 10]);
        expected.push(b'!');
        assert_eq!(read_all(&s, file.id).await, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_refuses_a_store_with_another_format_version() {
        let tmp = tempfile::tempdir().unwrap();
        drop(open(tmp.path()));
        {
            let db = redb::Database::create(tmp.path().join("meta.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("counters");
                tx.open_table(def)
                    .unwrap()
                    .insert("format_version", 99)
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        match LocalStore::open(tmp.path()) {
            Err(Error::Io(message)) => assert!(message.contains("format version 99"), "{message}"),
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => panic!("opened a store of another format version"),
        }
    }
}
