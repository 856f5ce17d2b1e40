//! A file whose data holder cannot be reached (a cluster node that died holds it, until
//! replication): the calls that need no byte of it still work.

use std::sync::atomic::{AtomicBool, Ordering};

use backend::engine::{DataStore, Engine};
use backend::mem::{MemData, MemMeta};
use backend::{CreateMode, Cred, Error, FsStat, NodeKind, Residency, Result, SetAttr, Store};

/// Memory data that answers `Unavailable` to every call once `gone` is set.
#[derive(Default)]
struct Holder {
    data: MemData,
    gone: AtomicBool,
}

impl Holder {
    fn reach(&self) -> Result<()> {
        if self.gone.load(Ordering::SeqCst) {
            Err(Error::Unavailable)
        } else {
            Ok(())
        }
    }
}

impl DataStore for Holder {
    const BLOCKING: bool = false;
    fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.reach()?;
        self.data.read_at(ino, offset, buf)
    }
    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        self.reach()?;
        self.data.write_at(ino, offset, data)
    }
    fn set_len(&self, ino: u64, len: u64) -> Result<()> {
        self.reach()?;
        self.data.set_len(ino, len)
    }
    fn sync(&self, ino: u64) -> Result<()> {
        self.reach()?;
        self.data.sync(ino)
    }
    fn remove(&self, ino: u64) -> Result<()> {
        self.reach()?;
        self.data.remove(ino)
    }
    fn space(&self, files_used: u64) -> Result<FsStat> {
        self.data.space(files_used)
    }
    fn residency(&self, ino: u64, size: u64) -> Result<Residency> {
        self.reach()?;
        self.data.residency(ino, size)
    }
}

#[tokio::test]
async fn a_new_empty_file_is_truncated_to_empty_without_its_data_holder() {
    let engine = Engine::with_stores(MemMeta::default(), Holder::default()).unwrap();
    let cred = Cred::root();
    let (file, _) = engine
        .create(
            &cred,
            engine.root(),
            b"new",
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await
        .unwrap();
    engine.data().gone.store(true, Ordering::SeqCst);
    let to = |size| SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };
    // What open(O_CREAT | O_TRUNC) sends after the create: no byte is cut.
    let wcc = engine.setattr(&cred, file.id, to(0), None).await.unwrap();
    assert_eq!(wcc.after.size, 0);
    // A size that needs the data area still waits for its holder.
    assert_eq!(
        engine.setattr(&cred, file.id, to(5), None).await.err(),
        Some(Error::Unavailable)
    );
    engine.data().gone.store(false, Ordering::SeqCst);
    engine.setattr(&cred, file.id, to(5), None).await.unwrap();
    let read = engine.read(&cred, file.id, 0, 10).await.unwrap();
    assert_eq!(&read.data[..], &[0u8; 5]);
}
