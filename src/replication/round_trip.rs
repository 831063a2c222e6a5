//! What the replicating worker says to Redis and how it reads the answers:
//! the handshake of each connection (`AUTH`, `SELECT`, `SCRIPT LOAD`), a
//! round trip per tick (each map's script, then `WAIT` and `ROLE` with
//! `sentinel=`), and each reply matched to what it answers. What the scripts
//! do is `sync.rs`'s.
//!
//! Redis is on the other side of a network, so what it answers is bounded
//! (`shared_map_http_parse::resp`: depth, size, each byte scanned once) before
//! it is decoded.

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use shared_map_http_parse::resp::Limits;

use ngx::ffi::{NGX_LOG_ERR, NGX_LOG_NOTICE};
use ngx::ngx_log_error;

use crate::log::MapName;
use crate::replication::connection::{current_msec, repeated, wall_ms, Replicator, BUFFER_KEPT, RETRY, TIMEOUT};
use crate::replication::io::{command, encode};
use crate::replication::sync;

/// The deepest reply: the stream's entries (array), an entry (array), its
/// fields (array), inside the script's reply (array).
const REPLY_DEPTH: usize = 4;
/// The largest reply to `AUTH`, `SELECT` or `SCRIPT LOAD` (an error included).
const HANDSHAKE_BYTES: usize = 64 * 1024;
/// How long a round trip waits for a replica to copy its batches (`WAIT`).
const WAIT_MS: &[u8] = b"200";

/// What a reply answers.
pub(super) enum Expect {
    /// `AUTH` or `SELECT`: an error closes the connection.
    Handshake,
    /// `SCRIPT LOAD`: the script's SHA-1, for `EVALSHA`.
    Script,
    /// The round trip of the map at this index.
    Map(usize),
    /// `WAIT` after the round trip's scripts (with `sentinel=`): the maps'
    /// replies wait for it and for `ROLE`, so that a batch is acknowledged
    /// once a replica has it too, or when the master has no replica.
    Wait,
    /// `ROLE`: the master's connected replicas.
    Role,
}

impl Replicator {
    /// The handshake of a new connection: credentials, database, and the
    /// script, whose SHA-1 `EVALSHA` names.
    pub(super) fn handshake(&mut self) {
        let params = &self.conf.params;
        if let Some(password) = &params.password {
            let auth = match &params.user {
                Some(user) => command(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => command(&[b"AUTH", password.as_bytes()]),
            };
            encode(&mut self.out, &auth);
            self.expect.push_back(Expect::Handshake);
        }
        let db = itoa::Buffer::new().format(self.conf.params.db).to_owned();
        encode(&mut self.out, &command(&[b"SELECT", db.as_bytes()]));
        self.expect.push_back(Expect::Handshake);
        // Loaded again on every connection: a restarted Redis has forgotten it.
        self.sha.clear();
        encode(&mut self.out, &command(&[b"SCRIPT", b"LOAD", sync::SCRIPT.as_bytes()]));
        self.expect.push_back(Expect::Script);
    }

    pub(super) fn tick(&mut self) {
        let now = current_msec();
        for (msg, repeats) in self.throttle.due(wall_ms()) {
            ngx_log_error!(NGX_LOG_ERR, self.log, "shared map: Redis: {}{}", msg, repeated(repeats));
        }
        self.sentinel_tick(now);
        if self.conn.is_null() {
            let known = self.sentinel.is_none() || self.target.is_some();
            if now >= self.retry_at && known {
                self.connect();
            }
            return;
        }
        if self.busy {
            if now > self.deadline {
                self.fail("timed out");
            }
            return;
        }
        let prefix = self.conf.params.prefix.as_str();
        for (i, sync) in self.maps.iter_mut().enumerate() {
            encode(&mut self.out, &sync::request(sync, prefix, &self.sha));
            self.expect.push_back(Expect::Map(i));
        }
        if self.sentinel.is_some() {
            // No replica at the last ROLE: nothing to wait for, and WAIT 1
            // would stall every round trip for WAIT_MS.
            let wait: [&[u8]; 3] = match self.replicas {
                0 => [b"WAIT", b"0", b"0"],
                _ => [b"WAIT", b"1", WAIT_MS],
            };
            encode(&mut self.out, &command(&wait));
            self.expect.push_back(Expect::Wait);
            encode(&mut self.out, &command(&[b"ROLE"]));
            self.expect.push_back(Expect::Role);
        }
        self.round_ok = Some(true);
        self.busy = true;
        self.deadline = now + TIMEOUT;
        self.write();
    }

    /// What the reply awaited next may be: a map's reply at most what the map
    /// could hold, in Redis's words: its whole contents (each key twice, in
    /// the values and in the types, with a few dozen bytes of framing each),
    /// or stream entries whose fields take at most `space` bytes (the script
    /// bounds its read so) with their framing.
    fn limits(&self, expect: &Expect) -> Limits {
        let bytes = match expect {
            Expect::Handshake | Expect::Script | Expect::Wait | Expect::Role => HANDSHAKE_BYTES,
            Expect::Map(i) => {
                let spec = &self.maps[*i].map.spec;
                let entries = usize::try_from(spec.entries).unwrap_or(usize::MAX).max(sync::READ);
                spec.space
                    .saturating_mul(2)
                    .saturating_add(entries.saturating_mul(256))
                    .saturating_add(HANDSHAKE_BYTES)
            }
        };
        Limits {
            depth: REPLY_DEPTH,
            bytes,
        }
    }

    /// Handles the whole replies received; false when the connection was closed.
    pub(super) fn replies(&mut self) -> bool {
        let mut start = 0;
        while start < self.input.len() {
            let Some(limits) = self.expect.front().map(|e| self.limits(e)) else {
                self.fail("unexpected reply");
                return false;
            };
            let len = match self.scanner.scan(&self.input[start..], limits) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    self.fail(&e.to_string());
                    return false;
                }
            };
            // A whole reply within the bounds: decoded once.
            let frame = match decode(&self.input[start..start + len]) {
                Ok(Some((frame, used))) if used == len => frame,
                Ok(_) => {
                    self.fail("invalid reply");
                    return false;
                }
                Err(e) => {
                    self.fail(&format!("invalid reply: {e}"));
                    return false;
                }
            };
            start += len;
            if !self.reply(frame) {
                return false;
            }
        }
        self.input.drain(..start);
        if self.input.is_empty() && self.input.capacity() > BUFFER_KEPT {
            self.input = Vec::new();
        }
        true
    }

    /// Handles one reply; false when the connection was closed.
    fn reply(&mut self, frame: OwnedFrame) -> bool {
        match self.expect.pop_front() {
            Some(Expect::Handshake) => {
                if let OwnedFrame::Error(e) = frame {
                    self.fail(&e);
                    return false;
                }
            }
            Some(Expect::Script) => match frame {
                OwnedFrame::BulkString(sha) => self.sha = sha,
                OwnedFrame::Error(e) => {
                    self.fail(&e);
                    return false;
                }
                _ => {}
            },
            Some(Expect::Map(i)) => {
                if matches!(&frame, OwnedFrame::Error(e) if e.starts_with("NOSCRIPT")) {
                    // SCRIPT FLUSH on the server: load it again on a new connection.
                    self.fail("NOSCRIPT: the script was flushed");
                    return false;
                }
                if let OwnedFrame::Error(e) = &frame {
                    // A master demoted to a replica by a failover: ask again.
                    if e.starts_with("READONLY") {
                        self.fail(&format!("{e} (a demoted master)"));
                        return false;
                    }
                }
                if self.sentinel.is_some() {
                    self.held.push((i, frame));
                } else {
                    self.apply(i, frame);
                }
            }
            Some(Expect::Wait) => {
                self.copied = matches!(frame, OwnedFrame::Integer(n) if n >= 1);
            }
            Some(Expect::Role) => {
                // Acknowledged when a replica has the batches, or when the
                // master has none to fail over to. A replica that lags
                // beyond WAIT_MS: not acknowledged, the batches are resent
                // (their numbers make that harmless) until it has them.
                let replicas = match &frame {
                    OwnedFrame::Array(role) => match role.get(2) {
                        Some(OwnedFrame::Array(list)) => list.len(),
                        _ => 0,
                    },
                    _ => 0,
                };
                self.replicas = replicas;
                let ack = self.copied || replicas == 0;
                for (i, frame) in core::mem::take(&mut self.held) {
                    if !ack {
                        self.maps[i].flight = 0;
                    }
                    self.apply(i, frame);
                }
            }
            None => {
                self.fail("unexpected reply");
                return false;
            }
        }
        if self.expect.is_empty() {
            self.busy = false;
            if self.round_ok.take() == Some(true) && self.failing {
                self.failing = false;
                if let Some(repeats) = self.notices.check("working", wall_ms()) {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        self.log,
                        "shared map: Redis: replicating again{}",
                        repeated(repeats)
                    );
                }
            }
            // A backlog to send or to read: the next round trip now, not at
            // the next tick (the event loop runs between round trips anyway).
            if self.maps.iter().any(|m| m.more) {
                self.tick();
                return !self.conn.is_null();
            }
        }
        true
    }

    /// Applies map `i`'s reply and reports it.
    fn apply(&mut self, i: usize, frame: OwnedFrame) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match sync::apply(&mut self.maps[i], frame, now_ms) {
            // Redis answers: the next connection failure starts the pauses anew.
            Ok(()) => self.backoff = RETRY,
            Err(e) => {
                let msg = format!("{}: {}", MapName(&self.maps[i].map.name), e);
                self.log_failure(&msg);
                self.round_ok = Some(false);
                sync::report_error(&self.maps[i..=i], true, &msg);
            }
        }
    }
}
