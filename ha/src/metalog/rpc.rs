//! The inter-node frames of the metadata log, sans IO: what one node's Raft sends another
//! (append entries, vote, snapshot chunks) and the answers, authenticated with the cluster key.
//!
//! ```text
//! frame = magic "SLRF" | version:u8 (2) | kind:u8 | len:u32 | body[len] | mac[32]
//! mac   = BLAKE3-keyed(derive_key(MAC_CONTEXT, cluster key), magic .. body)
//! ```
//! Version 1 used HMAC-SHA256, which took nearly half of every node's CPU when file data
//! flows between nodes (each copy of a write is signed once and checked once); BLAKE3 in
//! keyed mode is a MAC of the same strength at several times the speed.
//! The length is checked against [`FRAME_BODY_MAX`] before anything is allocated, and the MAC
//! before the body is parsed: a node without the key, or a damaged frame, is refused whole.
//! Bodies: append entries carry a small JSON header and the entries in the log's own binary
//! form ([`super::log::encode_entry`]), so file-system data is never JSON; snapshot chunks carry
//! their bytes raw; votes and every answer are JSON.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{LogId, SnapshotMeta, Vote};

use super::TypeConfig;

pub const MAGIC: &[u8; 4] = b"SLRF";
pub const VERSION: u8 = 2;
/// The BLAKE3 key-derivation context of the frame MAC key.
const MAC_CONTEXT: &str = "sluice 2026-12-06 inter-node frame mac";
/// The largest body: the biggest append (see `openraft::Config::max_payload_entries`) or
/// snapshot chunk must fit.
pub const FRAME_BODY_MAX: usize = 64 << 20;
const HEADER_LEN: usize = 10;
const MAC_LEN: usize = 32;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AppendEntries = 1,
    Vote = 2,
    InstallSnapshot = 3,
    /// A file-system call shipped to the metadata leader (`crate::forward::wire`).
    Call = 4,
    /// The answer to a request: `Result<response, RaftError>` as JSON.
    Reply = 128,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::AppendEntries,
            2 => Kind::Vote,
            3 => Kind::InstallSnapshot,
            4 => Kind::Call,
            128 => Kind::Reply,
            _ => return None,
        })
    }
}

/// The shared secret every node of a cluster holds (kept as the MAC key derived from it).
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    pub fn new(bytes: &[u8]) -> ClusterKey {
        ClusterKey(blake3::derive_key(MAC_CONTEXT, bytes))
    }

    fn mac(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.0)
    }
}

/// Frames `body` as `kind`, signed with `key`.
pub fn encode_frame(key: &ClusterKey, kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let mut mac = key.mac();
    mac.update(&out);
    out.extend_from_slice(mac.finalize().as_bytes());
    out
}

/// Frames `body` followed by `data` (file data, sent from where it lies rather than copied
/// into the frame): the header and body, then `data`, then the returned MAC go on the wire in
/// that order.
pub fn encode_frame_parts(
    key: &ClusterKey,
    kind: Kind,
    body: &[u8],
    data: &[u8],
) -> (Vec<u8>, [u8; MAC_LEN]) {
    let len = body.len() + data.len();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(body);
    let mut mac = key.mac();
    mac.update(&out);
    mac.update(data);
    (out, *mac.finalize().as_bytes())
}

/// A frame's header, read before its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub len: usize,
}

/// Checks the fixed header: magic, version, kind, and the length bound.
pub fn decode_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, String> {
    if &bytes[..4] != MAGIC {
        return Err("not a Sluice metadata-log frame".into());
    }
    if bytes[4] != VERSION {
        return Err(format!(
            "frame version {} (this node speaks {VERSION})",
            bytes[4]
        ));
    }
    let kind = Kind::from_u8(bytes[5]).ok_or_else(|| format!("unknown frame kind {}", bytes[5]))?;
    let len = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    if len > FRAME_BODY_MAX {
        return Err(format!("a frame of {len} bytes (at most {FRAME_BODY_MAX})"));
    }
    Ok(Header { kind, len })
}

/// The bytes that follow a header of `len`: the body and the MAC.
pub fn rest_len(header: &Header) -> usize {
    header.len + MAC_LEN
}

/// Checks the MAC over `header` + `rest` (body and MAC) and returns the body.
pub fn verify<'a>(
    key: &ClusterKey,
    header: &[u8; HEADER_LEN],
    rest: &'a [u8],
) -> Result<&'a [u8], String> {
    let split = rest
        .len()
        .checked_sub(MAC_LEN)
        .ok_or("frame shorter than its MAC")?;
    let (body, tag) = rest.split_at(split);
    let mut mac = key.mac();
    mac.update(header);
    mac.update(body);
    let tag: [u8; MAC_LEN] = tag
        .try_into()
        .map_err(|_| "frame MAC of the wrong length")?;
    // `blake3::Hash` compares in constant time.
    if mac.finalize() != blake3::Hash::from_bytes(tag) {
        return Err("frame MAC does not match: wrong cluster key or damaged frame".to_string());
    }
    Ok(body)
}

/// Decodes a whole frame (header, body, MAC) held in memory.
pub fn decode_frame<'a>(key: &ClusterKey, bytes: &'a [u8]) -> Result<(Kind, &'a [u8]), String> {
    let header: &[u8; HEADER_LEN] = bytes.first_chunk().ok_or("short frame")?;
    let h = decode_header(header)?;
    let rest = &bytes[HEADER_LEN..];
    if rest.len() != rest_len(&h) {
        return Err("frame length does not match its header".into());
    }
    Ok((h.kind, verify(key, header, rest)?))
}

pub const HEADER_BYTES: usize = HEADER_LEN;

#[derive(serde::Serialize, serde::Deserialize)]
struct AppendHeader {
    vote: Vote<u64>,
    prev_log_id: Option<LogId<u64>>,
    leader_commit: Option<LogId<u64>>,
    entries: u32,
}

fn json_then(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or("short body")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err("body shorter than its header".into());
    }
    Ok(rest.split_at(len))
}

fn with_json(json: Vec<u8>, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + json.len() + capacity);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Plain data structures serialize without error.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn encode_append(req: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    let header = AppendHeader {
        vote: req.vote,
        prev_log_id: req.prev_log_id,
        leader_commit: req.leader_commit,
        entries: req.entries.len() as u32,
    };
    let mut out = with_json(json(&header), req.entries.len() * 64);
    for e in &req.entries {
        let bytes = super::log::encode_entry(e);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

pub fn decode_append(body: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, String> {
    let (header, mut rest) = json_then(body)?;
    let header: AppendHeader = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let n = header.entries as usize;
    // Every entry takes at least its 4-byte length: bounded by the bytes present.
    if n > rest.len() / 4 {
        return Err(format!("{n} entries in {} bytes", rest.len()));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, after) = rest.split_first_chunk::<4>().ok_or("short entry")?;
        let len = u32::from_le_bytes(*len) as usize;
        if after.len() < len {
            return Err("entry longer than the frame".into());
        }
        let (entry, after) = after.split_at(len);
        entries.push(super::log::decode_entry(entry)?);
        rest = after;
    }
    if !rest.is_empty() {
        return Err("trailing bytes after the entries".into());
    }
    Ok(AppendEntriesRequest {
        vote: header.vote,
        prev_log_id: header.prev_log_id,
        entries,
        leader_commit: header.leader_commit,
    })
}

pub fn encode_vote(req: &VoteRequest<u64>) -> Vec<u8> {
    json(req)
}

pub fn decode_vote(body: &[u8]) -> Result<VoteRequest<u64>, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotHeader {
    vote: Vote<u64>,
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    offset: u64,
    done: bool,
}

pub fn encode_snapshot(req: &InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    let header = SnapshotHeader {
        vote: req.vote,
        meta: req.meta.clone(),
        offset: req.offset,
        done: req.done,
    };
    let mut out = with_json(json(&header), req.data.len());
    out.extend_from_slice(&req.data);
    out
}

pub fn decode_snapshot(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, String> {
    let (header, data) = json_then(body)?;
    let h: SnapshotHeader = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    Ok(InstallSnapshotRequest {
        vote: h.vote,
        meta: h.meta,
        offset: h.offset,
        data: data.to_vec(),
        done: h.done,
    })
}

/// An answer: the handler's result, as JSON.
pub fn encode_reply<T: serde::Serialize, E: serde::Serialize>(result: &Result<T, E>) -> Vec<u8> {
    json(result)
}

pub fn decode_reply<T: serde::de::DeserializeOwned, E: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Result<T, E>, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metalog::Proposal;
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    fn key() -> ClusterKey {
        ClusterKey::new(b"cluster secret")
    }

    fn append() -> AppendEntriesRequest<TypeConfig> {
        let id = |index| LogId::new(CommittedLeaderId::new(3, 1), index);
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(id(6)),
            entries: vec![
                Entry {
                    log_id: id(7),
                    payload: EntryPayload::Normal(Proposal(vec![1, 2, 3])),
                },
                Entry {
                    log_id: id(8),
                    payload: EntryPayload::Blank,
                },
            ],
            leader_commit: Some(id(6)),
        }
    }

    #[test]
    fn an_append_frame_decodes_to_the_same_request() {
        let req = append();
        let frame = encode_frame(&key(), Kind::AppendEntries, &encode_append(&req));
        let (kind, body) = decode_frame(&key(), &frame).unwrap();
        assert_eq!(kind, Kind::AppendEntries);
        let back = decode_append(body).unwrap();
        assert_eq!(back.entries, req.entries);
        assert_eq!((back.vote, back.prev_log_id), (req.vote, req.prev_log_id));
    }

    #[test]
    fn a_frame_signed_with_another_key_or_altered_is_refused() {
        let frame = encode_frame(&key(), Kind::Vote, b"{}");
        let other = ClusterKey::new(b"another cluster");
        assert!(decode_frame(&other, &frame)
            .unwrap_err()
            .contains("wrong cluster key"));
        let mut altered = frame.clone();
        altered[HEADER_LEN] ^= 1;
        assert!(decode_frame(&key(), &altered).is_err());
    }

    #[test]
    fn headers_with_a_bad_magic_version_kind_or_length_are_refused() {
        let frame = encode_frame(&key(), Kind::Vote, b"{}");
        let header = |edit: &dyn Fn(&mut [u8; HEADER_LEN])| {
            let mut h: [u8; HEADER_LEN] = *frame.first_chunk().unwrap();
            edit(&mut h);
            decode_header(&h)
        };
        assert!(header(&|h| h[0] = b'X').is_err());
        assert!(header(&|h| h[4] = 1).is_err());
        assert!(header(&|h| h[5] = 9).is_err());
        assert!(header(&|h| h[6..10].copy_from_slice(&u32::MAX.to_le_bytes())).is_err());
        assert!(header(&|_| {}).is_ok());
    }

    #[test]
    fn an_append_body_with_a_lying_entry_count_is_refused() {
        let mut body = with_json(
            json(&AppendHeader {
                vote: Vote::new(1, 1),
                prev_log_id: None,
                leader_commit: None,
                entries: u32::MAX,
            }),
            0,
        );
        body.extend_from_slice(&[0; 8]);
        assert!(decode_append(&body).is_err());
    }
}
