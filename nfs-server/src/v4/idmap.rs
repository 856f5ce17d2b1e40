//! NFSv4 owner strings (RFC 8881 §5.9): how uids and gids appear in the `owner` and
//! `owner_group` attributes.
//!
//! * [`IdMap::Numeric`] (the default): `"1000"`. This is what the Linux client sends and
//!   expects with AUTH_SYS when idmapd is not set up (`nfs4_disable_idmapping`, its default).
//! * [`IdMap::Names`]: `"alice@example.com"` for ids found in a passwd and a group file (this
//!   host's `/etc/passwd` and `/etc/group` by default); ids without a name stay numeric. Clients
//!   need idmapd with the same `Domain`.
//!
//! Either way a numeric string, or a number at any domain, is accepted on input, and a name
//! at another domain, or a name nobody has, is NFS4ERR_BADOWNER.

use std::collections::HashMap;
use std::path::Path;

use nfs_proto::v4::Nfsstat4;

#[derive(Clone, Debug, Default)]
pub enum IdMap {
    #[default]
    Numeric,
    Names(Box<Names>),
}

#[derive(Clone, Debug)]
pub struct Names {
    domain: String,
    users: Table,
    groups: Table,
}

#[derive(Clone, Debug, Default)]
struct Table {
    by_id: HashMap<u32, String>,
    by_name: HashMap<String, u32>,
}

impl Table {
    /// Reads `name:x:id:...` lines; the first name of an id wins, as with getpwuid.
    fn load(path: &Path) -> std::io::Result<Table> {
        let text = std::fs::read_to_string(path)?;
        let mut t = Table::default();
        for line in text.lines() {
            let mut f = line.split(':');
            let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Ok(id) = id.parse::<u32>() else { continue };
            if name.is_empty() || name.starts_with('#') || name.contains('@') {
                continue;
            }
            t.by_id.entry(id).or_insert_with(|| name.to_string());
            t.by_name.entry(name.to_string()).or_insert(id);
        }
        Ok(t)
    }
}

impl IdMap {
    /// Names at `domain` from the given passwd and group files.
    pub fn names(domain: &str, passwd: &Path, group: &Path) -> std::io::Result<IdMap> {
        let read = |p: &Path| {
            Table::load(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Ok(IdMap::Names(Box::new(Names {
            domain: domain.to_string(),
            users: read(passwd)?,
            groups: read(group)?,
        })))
    }

    pub fn owner(&self, uid: u32) -> String {
        self.name(uid, |n| &n.users)
    }

    pub fn owner_group(&self, gid: u32) -> String {
        self.name(gid, |n| &n.groups)
    }

    pub fn parse_owner(&self, s: &[u8]) -> Result<u32, Nfsstat4> {
        self.parse(s, |n| &n.users)
    }

    pub fn parse_owner_group(&self, s: &[u8]) -> Result<u32, Nfsstat4> {
        self.parse(s, |n| &n.groups)
    }

    fn name(&self, id: u32, table: impl Fn(&Names) -> &Table) -> String {
        match self {
            IdMap::Names(n) => match table(n).by_id.get(&id) {
                Some(name) => format!("{name}@{}", n.domain),
                None => id.to_string(),
            },
            IdMap::Numeric => id.to_string(),
        }
    }

    fn parse(&self, s: &[u8], table: impl Fn(&Names) -> &Table) -> Result<u32, Nfsstat4> {
        let s = std::str::from_utf8(s).map_err(|_| Nfsstat4::BadOwner)?;
        let (user, domain) = match s.split_once('@') {
            Some((u, d)) => (u, Some(d)),
            None => (s, None),
        };
        if let Ok(id) = user.parse::<u32>() {
            return Ok(id);
        }
        match self {
            IdMap::Names(n) if domain.is_none_or(|d| d.eq_ignore_ascii_case(&n.domain)) => table(n)
                .by_name
                .get(user)
                .copied()
                .ok_or(Nfsstat4::BadOwner),
            _ => Err(Nfsstat4::BadOwner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (tempfile::TempDir, IdMap) {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1000:1000::/home/alice:/bin/sh\n\
             alias:x:1000:1000::/:/bin/false\nbroken line\nbob:x:notanumber:1\n",
        )
        .unwrap();
        std::fs::write(&group, "root:x:0:\nstaff:x:50:alice\n").unwrap();
        let map = IdMap::names("example.com", &passwd, &group).unwrap();
        (dir, map)
    }

    #[test]
    fn numeric_mapping_writes_numbers_and_reads_numbers_at_any_domain() {
        let m = IdMap::Numeric;
        assert_eq!(m.owner(1000), "1000");
        assert_eq!(m.owner_group(50), "50");
        assert_eq!(m.parse_owner(b"1000"), Ok(1000));
        assert_eq!(m.parse_owner(b"1000@anything"), Ok(1000));
        assert_eq!(m.parse_owner(b"alice@example.com"), Err(Nfsstat4::BadOwner));
        assert_eq!(m.parse_owner(b"\xff"), Err(Nfsstat4::BadOwner));
    }

    #[test]
    fn name_mapping_writes_names_at_the_domain_and_reads_them_back() {
        let (_d, m) = names();
        assert_eq!(
            m.owner(1000),
            "alice@example.com",
            "the first name of an id wins"
        );
        assert_eq!(m.owner(0), "root@example.com");
        assert_eq!(m.owner(4242), "4242", "an id without a name stays numeric");
        assert_eq!(m.owner_group(50), "staff@example.com");
        assert_eq!(m.parse_owner(b"alice@example.com"), Ok(1000));
        assert_eq!(m.parse_owner(b"alice@EXAMPLE.com"), Ok(1000));
        assert_eq!(m.parse_owner(b"alias"), Ok(1000));
        assert_eq!(m.parse_owner_group(b"staff@example.com"), Ok(50));
        assert_eq!(m.parse_owner(b"4242@example.com"), Ok(4242));
    }

    #[test]
    fn names_at_another_domain_or_unknown_are_badowner() {
        let (_d, m) = names();
        assert_eq!(m.parse_owner(b"alice@other.org"), Err(Nfsstat4::BadOwner));
        assert_eq!(
            m.parse_owner(b"mallory@example.com"),
            Err(Nfsstat4::BadOwner)
        );
        assert_eq!(
            m.parse_owner_group(b"alice@example.com"),
            Err(Nfsstat4::BadOwner)
        );
    }

    #[test]
    fn a_missing_passwd_file_is_an_error_naming_it() {
        let e = IdMap::names(
            "d",
            Path::new("/nonexistent/passwd"),
            Path::new("/etc/group"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/passwd"));
    }
}
