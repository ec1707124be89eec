//! Connections on switchd's own sockets: the control socket, the Docker
//! plugin socket, published ports and the gateway's DNS over TCP.
//!
//! Two things every server loop here needs, so that no client (and no
//! number of clients) can make switchd spin, flood its log or lock others
//! out:
//!
//! - [`AcceptErrors`]: what to do when `accept` (or a UDP `recv_from`)
//!   fails. Errors a client can cause (a connection reset before it was
//!   accepted) are retried at once; running out of descriptors or memory
//!   closes the connections idle longest, anywhere in the process, and
//!   pauses; anything else pauses briefly. Warnings are written at most
//!   once per [`REPORT_INTERVAL`], with a count of those held back.
//! - [`Table`]: the connections one server holds, bounded in all and per
//!   source address. When a bound is reached the connection idle longest
//!   (in that source, or in all) is closed to make room, rather than the
//!   newcomer refused; connections silent for the idle timeout are closed.
//!
//! The table itself decides with `now` given ([`Table::admit`]); the slots'
//! activity is stamped by the tasks that move bytes ([`Stamped`]), and a
//! task learns that its connection is to close from [`Guard::closed`].

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// How often a repeated warning is written at most.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// The pause after an unexpected error, so a persistent one cannot spin.
pub const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// The pause after running out of descriptors or memory, once idle
/// connections were closed to free some.
pub const RESOURCE_PAUSE: Duration = Duration::from_millis(50);
/// How many idle connections are closed each time descriptors run out.
pub const RECLAIM: usize = 32;

/// Lets one message through per interval and counts the rest.
#[derive(Debug, Clone)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> Self {
        RateLimit { interval, last: None, held_back: 0 }
    }

    /// `Some(n)` if a message may go out now, `n` being how many were held
    /// back since the last one; `None` if this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// What a failed `accept` or `recv_from` calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The error belongs to one connection or datagram (reset before it
    /// was accepted, an ICMP error for an earlier send): go on at once.
    Transient,
    /// Out of descriptors, buffers or memory: free some, then wait.
    Resources,
    /// Anything else: wait a little, so that it cannot spin.
    Other,
}

impl ErrorKind {
    pub fn of(e: &io::Error) -> ErrorKind {
        match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => ErrorKind::Resources,
            // accept(2): "already-pending network errors on the new socket"
            // are to be retried like EAGAIN; a client causes them at will,
            // so they must cost no pause.
            Some(
                libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::ECONNREFUSED
                | libc::EINTR
                | libc::EAGAIN
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM,
            ) => ErrorKind::Transient,
            _ => ErrorKind::Other,
        }
    }

    /// How long to wait before trying again.
    pub fn pause(self) -> Duration {
        match self {
            ErrorKind::Transient => Duration::ZERO,
            ErrorKind::Resources => RESOURCE_PAUSE,
            ErrorKind::Other => ERROR_PAUSE,
        }
    }
}

/// The error handling of one server loop: see the module's notes.
#[derive(Debug)]
pub struct AcceptErrors {
    what: String,
    log: RateLimit,
}

impl AcceptErrors {
    /// `what` names the socket in warnings ("control socket").
    pub fn new(what: impl Into<String>) -> Self {
        AcceptErrors { what: what.into(), log: RateLimit::new(REPORT_INTERVAL) }
    }

    /// Handles a failed accept or receive: warns (rate-limited), closes idle
    /// connections if descriptors or memory ran out, and waits as long as
    /// the error calls for. Returns that kind.
    pub async fn pause(&mut self, e: &io::Error) -> ErrorKind {
        let kind = ErrorKind::of(e);
        let closed = if kind == ErrorKind::Resources { reclaim(Instant::now(), RECLAIM) } else { 0 };
        if let Some(held_back) = self.log.allow(Instant::now()) {
            let more = if held_back > 0 { format!(" ({held_back} more since the last report)") } else { String::new() };
            match kind {
                ErrorKind::Transient => tracing::debug!("{}: {e}{more}", self.what),
                ErrorKind::Resources => tracing::warn!(
                    "{}: {e}; closed {closed} idle connections to make room, pausing {} ms{more}",
                    self.what,
                    RESOURCE_PAUSE.as_millis()
                ),
                ErrorKind::Other => tracing::warn!("{}: {e}{more}", self.what),
            }
        }
        match kind.pause() {
            Duration::ZERO => tokio::task::yield_now().await,
            pause => tokio::time::sleep(pause).await,
        }
        kind
    }
}

/// Binds the Unix socket of a server at `path`, readable and writable by
/// root only, replacing a stale socket file no one answers on. Refused
/// when someone answers: `who` ("another switchd") is named in the error.
pub fn bind_unix(path: &std::path::Path, who: &str) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, format!("{who} is listening on {}", path.display())));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Who a connection is from, for the per-source bound: an IPv4 address,
/// an IPv6 /64 (one host's share of a network: a host picks addresses in
/// its /64 at will), or a local (Unix socket) client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Local,
    Ip(IpAddr),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::Ip(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Source::Ip(IpAddr::V6(prefix.into()))
            }
        }
    }
}

/// A table's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once.
    pub max: usize,
    /// Connections held at once from one [`Source`].
    pub per_source: usize,
    /// How long a connection may stay silent (both ways) before it is
    /// closed; `None`: as long as it likes.
    pub idle_timeout: Option<Duration>,
}

/// What a table did, counted since it was made.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections taken in.
    pub admitted: AtomicU64,
    /// Connections closed to make room for a newcomer.
    pub evicted: AtomicU64,
    /// Newcomers turned away: every connection there was busy.
    pub refused: AtomicU64,
    /// Connections closed after the idle timeout.
    pub timed_out: AtomicU64,
    /// Connections closed because descriptors or memory ran out.
    pub reclaimed: AtomicU64,
}

/// The same, as plain numbers (`switchctl ports` shows them as `relays`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CountersSnapshot {
    pub active: u64,
    pub admitted: u64,
    pub evicted: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub reclaimed: u64,
}

/// Why a newcomer was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Its source holds as many connections as it may, all of them busy.
    #[error("its source holds {0} busy connections, as many as it may")]
    SourceFull(usize),
    /// The table is full of busy connections.
    #[error("{0} busy connections are held, as many as may be")]
    Full(usize),
}

/// Which bound a newcomer met, when one connection was closed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// The oldest idle connection of the same source was closed.
    SameSource,
    /// The oldest idle connection of the table was closed.
    Oldest,
}

/// One connection's state, shared between the table and its task.
#[derive(Debug)]
struct Slot {
    source: Source,
    base: Instant,
    /// Nanoseconds after `base` of the last byte moved.
    last_active: AtomicU64,
    /// Requests being handled: a busy connection is never idle.
    busy: AtomicU32,
    /// Set once the connection is to close (evicted or timed out).
    closed: AtomicBool,
    wake: Notify,
}

impl Slot {
    fn touch(&self, now: Instant) {
        let at = now.saturating_duration_since(self.base).as_nanos() as u64;
        self.last_active.fetch_max(at, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_active.load(Ordering::Relaxed))
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn idle_for(&self, now: Instant) -> Duration {
        if self.is_busy() { Duration::ZERO } else { now.saturating_duration_since(self.last_active()) }
    }
}

/// What a table warns about, each kind rate-limited on its own.
#[derive(Debug, Clone, Copy)]
enum Report {
    SourceFull = 0,
    Full = 1,
    Refused = 2,
}

#[derive(Debug)]
struct Inner {
    /// Names the table in warnings ("control socket").
    name: String,
    /// Each kind of [`Report`] at most once per interval.
    reports: [RateLimit; 3],
    /// The table's counters (also counted by [`reclaim`]).
    counters: Arc<Counters>,
    limits: Limits,
    next_id: u64,
    slots: HashMap<u64, Arc<Slot>>,
    /// Connections not yet told to close, in all and per source.
    live: usize,
    live_by_source: HashMap<Source, usize>,
}

impl Inner {
    /// Warns that a bound was met (rate-limited per kind, with a count).
    fn report(&mut self, now: Instant, kind: Report, what: std::fmt::Arguments<'_>) {
        if let Some(held_back) = self.reports[kind as usize].allow(now) {
            let more = if held_back > 0 { format!(" ({held_back} more since the last report)") } else { String::new() };
            tracing::warn!("{}: {what}{more}", self.name);
        }
    }

    /// Marks a connection as to close (once), and wakes its task.
    fn close(&mut self, id: u64) -> bool {
        let Some(slot) = self.slots.get(&id) else { return false };
        if slot.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.live -= 1;
        if let Some(n) = self.live_by_source.get_mut(&slot.source) {
            *n -= 1;
            if *n == 0 {
                self.live_by_source.remove(&slot.source);
            }
        }
        slot.wake.notify_one();
        true
    }

    /// The connection idle longest (not busy, not closing), of `source` or of all.
    fn idlest(&self, now: Instant, source: Option<Source>) -> Option<(u64, Duration)> {
        self.slots
            .iter()
            .filter(|(_, s)| !s.is_closed() && !s.is_busy() && source.is_none_or(|src| s.source == src))
            .map(|(id, s)| (*id, s.idle_for(now)))
            .max_by_key(|(id, idle)| (*idle, std::cmp::Reverse(*id)))
    }
}

/// The connections one server holds. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Table {
    inner: Arc<Mutex<Inner>>,
    counters: Arc<Counters>,
}

/// Every table, so that running out of descriptors anywhere closes the
/// connections idle longest wherever they are: descriptors are the
/// process's, not one server's.
static TABLES: Mutex<Vec<Weak<Mutex<Inner>>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Table {
    /// An empty table; `name` names it in warnings ("control socket").
    pub fn new(name: impl Into<String>, limits: Limits) -> Table {
        let max = limits.max.max(1);
        let limits = Limits { max, per_source: limits.per_source.clamp(1, max), ..limits };
        let counters = Arc::new(Counters::default());
        let inner = Arc::new(Mutex::new(Inner {
            counters: counters.clone(),
            name: name.into(),
            reports: [const { RateLimit::new(REPORT_INTERVAL) }; 3],
            limits,
            next_id: 0,
            slots: HashMap::new(),
            live: 0,
            live_by_source: HashMap::new(),
        }));
        let mut tables = lock(&TABLES);
        tables.retain(|t| t.strong_count() > 0);
        tables.push(Arc::downgrade(&inner));
        Table { inner, counters }
    }

    pub fn limits(&self) -> Limits {
        lock(&self.inner).limits
    }

    /// Takes in a connection from `source` at `now`. At a bound, the
    /// connection idle longest within it is closed to make room (reported
    /// in `Admitted::evicted`); only when every one there is busy is the
    /// newcomer refused.
    pub fn admit(&self, now: Instant, source: Source) -> Result<Admitted, Refused> {
        let mut inner = lock(&self.inner);
        let limits = inner.limits;
        let mut evicted = None;
        if inner.live_by_source.get(&source).copied().unwrap_or(0) >= limits.per_source {
            let Some((id, idle)) = inner.idlest(now, Some(source)) else {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                inner.report(
                    now,
                    Report::Refused,
                    format_args!("refused a connection: {}", Refused::SourceFull(limits.per_source)),
                );
                return Err(Refused::SourceFull(limits.per_source));
            };
            inner.close(id);
            inner.report(
                now,
                Report::SourceFull,
                format_args!(
                    "a source holds {} connections, as many as it may: closed its one idle longest ({} s)",
                    limits.per_source,
                    idle.as_secs()
                ),
            );
            evicted = Some(Evicted::SameSource);
        } else if inner.live >= limits.max {
            let Some((id, idle)) = inner.idlest(now, None) else {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                inner.report(now, Report::Refused, format_args!("refused a connection: {}", Refused::Full(limits.max)));
                return Err(Refused::Full(limits.max));
            };
            inner.close(id);
            inner.report(
                now,
                Report::Full,
                format_args!(
                    "{} connections held, as many as may be: closed the one idle longest ({} s)",
                    limits.max,
                    idle.as_secs()
                ),
            );
            evicted = Some(Evicted::Oldest);
        }
        if evicted.is_some() {
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let slot = Arc::new(Slot {
            source,
            base: now,
            last_active: AtomicU64::new(0),
            busy: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        inner.slots.insert(id, slot.clone());
        inner.live += 1;
        *inner.live_by_source.entry(source).or_insert(0) += 1;
        self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        let guard = Guard { id, slot, table: Arc::downgrade(&self.inner), counters: self.counters.clone(), limits };
        Ok(Admitted { guard, evicted })
    }

    /// Tells every connection to close (the server is going away).
    pub fn close_all(&self) {
        let mut inner = lock(&self.inner);
        let ids: Vec<u64> = inner.slots.keys().copied().collect();
        for id in ids {
            inner.close(id);
        }
    }

    /// Connections held (not yet told to close).
    pub fn live(&self) -> usize {
        lock(&self.inner).live
    }

    pub fn counters(&self) -> CountersSnapshot {
        let c = &self.counters;
        CountersSnapshot {
            active: self.live() as u64,
            admitted: c.admitted.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            reclaimed: c.reclaimed.load(Ordering::Relaxed),
        }
    }
}

/// A newcomer taken in, and whether another connection was closed for it.
#[derive(Debug)]
pub struct Admitted {
    pub guard: Guard,
    pub evicted: Option<Evicted>,
}

/// A connection's place in its table, held by the task serving it; the
/// place is given back when it is dropped.
#[derive(Debug)]
pub struct Guard {
    id: u64,
    slot: Arc<Slot>,
    table: Weak<Mutex<Inner>>,
    counters: Arc<Counters>,
    limits: Limits,
}

/// Why a connection is to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Closed to make room for another, or to free descriptors.
    Evicted,
    /// Silent for the table's idle timeout.
    Idle,
}

impl Guard {
    /// Records activity (bytes moved) at `now`.
    pub fn touch(&self, now: Instant) {
        self.slot.touch(now);
    }

    /// Whether the connection has been told to close.
    pub fn is_closed(&self) -> bool {
        self.slot.is_closed()
    }

    /// Tells the table the connection is closing (its task is ending): it
    /// no longer counts against the bounds, though its place is only given
    /// back when the last holder drops it.
    pub fn close(&self) {
        if let Some(table) = self.table.upgrade() {
            lock(&table).close(self.id);
        }
    }

    /// Marks the connection busy (a request being handled: never idle, so
    /// never evicted or timed out) until the returned value is dropped.
    pub fn busy(&self) -> Busy<'_> {
        self.slot.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self)
    }

    /// Resolves when the connection is to close: evicted, or silent (and
    /// not busy) for the idle timeout. Cancel-safe.
    pub async fn closed(&self) -> Closed {
        loop {
            let woken = self.slot.wake.notified();
            if self.slot.is_closed() {
                return Closed::Evicted;
            }
            let Some(timeout) = self.limits.idle_timeout else {
                woken.await;
                continue;
            };
            let idle = self.slot.idle_for(Instant::now());
            if idle >= timeout {
                if let Some(table) = self.table.upgrade()
                    && lock(&table).close(self.id)
                {
                    self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                return Closed::Idle;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(timeout - idle) => {}
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(table) = self.table.upgrade() {
            let mut inner = lock(&table);
            inner.close(self.id);
            inner.slots.remove(&self.id);
        }
    }
}

/// A request in progress on a connection; see [`Guard::busy`].
#[derive(Debug)]
pub struct Busy<'a>(&'a Guard);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        // Idle from the end of the request, not from its start.
        self.0.slot.touch(Instant::now());
        self.0.slot.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Closes up to `n` connections, those idle longest in any table, to free
/// their descriptors; returns how many. Busy connections are never closed.
pub fn reclaim(now: Instant, n: usize) -> usize {
    let tables: Vec<Arc<Mutex<Inner>>> = {
        let mut all = lock(&TABLES);
        all.retain(|t| t.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    let mut candidates: Vec<(Duration, usize, u64)> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        let inner = lock(table);
        candidates.extend(
            inner.slots.iter().filter(|(_, s)| !s.is_closed() && !s.is_busy()).map(|(id, s)| (s.idle_for(now), t, *id)),
        );
    }
    candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
    let mut closed = 0;
    for (_, t, id) in candidates.into_iter().take(n) {
        let mut inner = lock(&tables[t]);
        if inner.close(id) {
            inner.counters.reclaimed.fetch_add(1, Ordering::Relaxed);
            closed += 1;
        }
    }
    closed
}

/// A stream that stamps its connection's slot whenever bytes come in, so
/// that a relay (`copy_bidirectional` over two of these) counts as active
/// while data moves either way.
#[derive(Debug)]
pub struct Stamped<'a, S> {
    inner: S,
    guard: &'a Guard,
}

impl<'a, S> Stamped<'a, S> {
    pub fn new(inner: S, guard: &'a Guard) -> Self {
        Stamped { inner, guard }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stamped<'_, S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.guard.touch(Instant::now());
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stamped<'_, S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits(max: usize, per_source: usize) -> Limits {
        Limits { max, per_source, idle_timeout: None }
    }

    fn ip(last: u8) -> Source {
        Source::of(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn rate_limit_lets_one_through_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(REPORT_INTERVAL);
        assert_eq!(r.allow(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(r.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(r.allow(t0 + REPORT_INTERVAL), Some(1000), "the count of those held back");
        assert_eq!(r.allow(t0 + REPORT_INTERVAL + SECOND), None);
        assert_eq!(r.allow(t0 + REPORT_INTERVAL * 3), Some(1));
    }

    #[test]
    fn errors_by_kind() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(ErrorKind::of(&os(libc::EMFILE)), ErrorKind::Resources);
        assert_eq!(ErrorKind::of(&os(libc::ENFILE)), ErrorKind::Resources);
        assert_eq!(ErrorKind::of(&os(libc::ENOBUFS)), ErrorKind::Resources);
        assert_eq!(ErrorKind::of(&os(libc::ENOMEM)), ErrorKind::Resources);
        assert_eq!(ErrorKind::of(&os(libc::ECONNABORTED)), ErrorKind::Transient);
        assert_eq!(ErrorKind::of(&os(libc::ECONNREFUSED)), ErrorKind::Transient);
        assert_eq!(ErrorKind::of(&os(libc::EBADF)), ErrorKind::Other);
        assert_eq!(ErrorKind::of(&io::Error::other("?")), ErrorKind::Other);
        assert!(ErrorKind::Resources.pause() > ErrorKind::Other.pause());
        assert_eq!(ErrorKind::Transient.pause(), Duration::ZERO, "a client must not be able to slow accept down");
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped), ip(7));
        assert_ne!(ip(7), ip(8));
    }

    #[test]
    fn a_full_table_closes_the_connection_idle_longest() {
        let t0 = Instant::now();
        let table = Table::new("test", limits(3, 3));
        let a = table.admit(t0, ip(1)).unwrap().guard;
        let b = table.admit(t0, ip(2)).unwrap().guard;
        let c = table.admit(t0, ip(3)).unwrap().guard;
        a.touch(t0 + 5 * SECOND);
        c.touch(t0 + 6 * SECOND);
        // b has been silent longest.
        let d = table.admit(t0 + 7 * SECOND, ip(4)).unwrap();
        assert_eq!(d.evicted, Some(Evicted::Oldest));
        assert!(b.is_closed() && !a.is_closed() && !c.is_closed() && !d.guard.is_closed());
        assert_eq!(table.live(), 3);
        // Then a (active at 5 s), while b's task has not let go yet.
        let e = table.admit(t0 + 8 * SECOND, ip(5)).unwrap();
        assert!(a.is_closed() && !c.is_closed());
        drop((b, a));
        let counters = table.counters();
        assert_eq!((counters.active, counters.admitted, counters.evicted, counters.refused), (3, 5, 2, 0));
        drop(e);
        assert_eq!(table.live(), 2);
    }

    #[test]
    fn busy_connections_are_never_closed_and_then_newcomers_are_refused() {
        let t0 = Instant::now();
        let table = Table::new("test", limits(2, 2));
        let a = table.admit(t0, ip(1)).unwrap().guard;
        let b = table.admit(t0, ip(2)).unwrap().guard;
        let _busy_a = a.busy();
        let _busy_b = b.busy();
        assert_eq!(table.admit(t0 + 100 * SECOND, ip(3)).unwrap_err(), Refused::Full(2));
        assert!(!a.is_closed() && !b.is_closed());
        assert_eq!(table.counters().refused, 1);
        drop(_busy_b);
        assert_eq!(table.admit(t0 + 100 * SECOND, ip(3)).unwrap().evicted, Some(Evicted::Oldest));
        assert!(b.is_closed() && !a.is_closed());
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let t0 = Instant::now();
        let table = Table::new("test", limits(10, 3));
        let mine: Vec<Guard> = (0..3).map(|i| table.admit(t0 + SECOND * i, ip(1)).unwrap().guard).collect();
        let other = table.admit(t0, ip(2)).unwrap().guard;
        // A fourth from the same source closes that source's oldest, even
        // though another source's connection is idle longer.
        let fourth = table.admit(t0 + 10 * SECOND, ip(1)).unwrap();
        assert_eq!(fourth.evicted, Some(Evicted::SameSource));
        assert!(mine[0].is_closed() && !mine[1].is_closed() && !other.is_closed());
        assert_eq!(table.live(), 4);
        let _busy: Vec<Busy<'_>> = mine[1..].iter().map(Guard::busy).collect();
        let _busy4 = fourth.guard.busy();
        assert_eq!(table.admit(t0 + 11 * SECOND, ip(1)).unwrap_err(), Refused::SourceFull(3));
        assert!(table.admit(t0 + 11 * SECOND, ip(3)).is_ok(), "other sources still get in");
    }

    #[test]
    fn close_all_closes_busy_ones_too() {
        let table = Table::new("test", limits(4, 4));
        let a = table.admit(Instant::now(), ip(1)).unwrap().guard;
        let b = table.admit(Instant::now(), ip(2)).unwrap().guard;
        let _busy = b.busy();
        table.close_all();
        assert!(a.is_closed() && b.is_closed());
        assert_eq!(table.live(), 0);
    }

    #[test]
    fn a_dropped_guard_gives_its_place_back() {
        let t0 = Instant::now();
        let table = Table::new("test", limits(1, 1));
        let a = table.admit(t0, ip(1)).unwrap().guard;
        drop(a);
        let b = table.admit(t0, ip(1)).unwrap();
        assert_eq!(b.evicted, None);
        assert_eq!(table.counters().evicted, 0);
    }

    #[test]
    fn reclaim_closes_the_idlest_of_every_table() {
        let t0 = Instant::now() - 100 * SECOND;
        let one = Table::new("test", limits(10, 10));
        let two = Table::new("test", limits(10, 10));
        let a = one.admit(t0, Source::Local).unwrap().guard;
        let b = two.admit(t0, Source::Local).unwrap().guard;
        let c = two.admit(t0, Source::Local).unwrap().guard;
        let busy = one.admit(t0, Source::Local).unwrap().guard;
        let _working = busy.busy();
        a.touch(t0 + 10 * SECOND);
        b.touch(t0 + 20 * SECOND);
        c.touch(t0 + 30 * SECOND);
        // Other tests' tables may hold connections too: count only ours.
        reclaim(t0 + 40 * SECOND, 2);
        assert!(a.is_closed() && b.is_closed(), "the two idle longest, across tables");
        assert!(!c.is_closed() && !busy.is_closed());
        assert_eq!(one.live() + two.live(), 2);
        assert_eq!((one.counters().reclaimed, two.counters().reclaimed), (1, 1));
    }

    #[tokio::test]
    async fn closed_resolves_on_eviction_and_after_the_idle_timeout() {
        let table =
            Table::new("test", Limits { max: 1, per_source: 1, idle_timeout: Some(Duration::from_millis(200)) });
        let a = table.admit(Instant::now(), Source::Local).unwrap().guard;
        let waiting = tokio::spawn(async move { a.closed().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = table.admit(Instant::now(), Source::Local).unwrap().guard;
        assert_eq!(tokio::time::timeout(SECOND, waiting).await.unwrap().unwrap(), Closed::Evicted);

        let started = Instant::now();
        // Activity pushes the timeout back.
        tokio::time::sleep(Duration::from_millis(120)).await;
        b.touch(Instant::now());
        assert_eq!(tokio::time::timeout(SECOND, b.closed()).await.unwrap(), Closed::Idle);
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
        assert_eq!(table.counters().timed_out, 1);
        assert_eq!(table.live(), 0);

        // A busy connection does not time out.
        let c = table.admit(Instant::now(), Source::Local).unwrap().guard;
        let busy = c.busy();
        assert!(tokio::time::timeout(Duration::from_millis(400), c.closed()).await.is_err());
        drop(busy);
        assert_eq!(tokio::time::timeout(SECOND, c.closed()).await.unwrap(), Closed::Idle);
    }
}
