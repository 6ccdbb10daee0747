//! Leases on a shared bench: one run at a time per unit, across the processes and users of a
//! host.
//!
//! Why it exists: two runs driving one physical unit at once (two engineers, two CI jobs on a
//! bench host) type into each other's consoles and judge each other's exchanges, so both sets of
//! verdicts are worthless. A run therefore leases each unit it drives (see [`unit_key`] for which
//! units take one) before bringing it up, and keeps the lease until the unit's group ends.
//!
//! Files in the lease directory ([`lease_dir`]), per lease key (the unit's `lease`, else
//! `<model>/<unit name>`), sanitised into a file-name stem by [`file_stem`]:
//!
//! - `<stem>.lock`: a file holding the key, which the holder keeps `flock(LOCK_EX)`ed for as long
//!   as it holds the unit. The kernel releases that lock when the process ends, however it ends
//!   (SIGKILL included). The file is never deleted: deleting a lock file would let two processes
//!   lock two different files of one name.
//! - `<stem>.json`: the lease record ([`LeaseRecord`]): who holds the unit (user, host, pid),
//!   since when, until when, the key, the run's output folder and command line. The holder
//!   writes it in place (never through a temporary file, never following a symlink) while it
//!   holds the lock, when it takes the lease and at every renewal, and removes it (or, when the
//!   sticky directory forbids that, empties it) when it releases the lease, before unlocking. A
//!   reader may catch it half written: an unreadable record counts as no record.
//!
//! **Staleness rule.** On one host the kernel's lock is the truth: a lock held is held (even
//! when its record has expired: `hilsec lease list` then shows the holder as `expired`, a run
//! that stopped renewing, i.e. one that hangs, for someone to stop), and a lock that could be
//! taken is free. A readable record left beside a free lock is a holder that did not release: it
//! is stale, recovered with a note ("which had died" when its pid is gone; "which had expired"
//! when its expiry passed). Across hosts sharing the directory (where a file system may not
//! carry `flock` from host to host), the record is what excludes, **best effort only**: a record
//! of another host whose expiry has not passed holds the unit; once it has passed (the holder
//! stopped renewing: it died or hangs), the lease is stale and recovered. The holder renews its
//! record every [`LeaseSettings::renew_every`] (default 1 minute) to `now + ttl` (default 10
//! minutes), so a hung holder elsewhere is seen as stale at most `ttl` after its last renewal.
//! Renewal and release touch the record only while it still names this holder, and a run that
//! took a lease re-reads the record after writing it and gives the lease up when another
//! holder's record is there; two hosts that recover one stale lease at the same instant can
//! still both win.
//!
//! A run takes the leases of all its units before any unit starts, in the sorted order of their
//! keys (every run uses that order, so two runs never wait for each other in a cycle), each with
//! what is left of [`LeaseSettings::wait`].
//!
//! The directory is created world-writable with the sticky bit (1777, like `/tmp`: nobody
//! replaces or removes another user's files); the lock and record files are made 0666, so the
//! next holder, of any user, can lock the lock file and rewrite the record in place. Files are
//! opened with `O_NOFOLLOW`, and created with `O_EXCL`, so a symlink planted in the directory
//! makes a run fail rather than write through it. Every wait is bounded: taking a lock never
//! blocks (`LOCK_NB`), waiting for a held unit polls at most until [`LeaseSettings::wait`] has
//! passed.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::board::{Model, Unit};

/// Longest lease key a board file may give.
pub const MAX_KEY_LEN: usize = 200;
/// The environment variable naming the lease directory (`--lease-dir` wins over it).
pub const DIR_ENV: &str = "HILSEC_LEASE_DIR";
/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(500);
/// Longest command line kept in a record.
const MAX_COMMAND_LEN: usize = 1024;

/// How a run takes its leases.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The lease directory (`--lease-dir`); `None`: [`lease_dir`] decides.
    pub dir: Option<PathBuf>,
    /// How long to wait for a unit another run holds (`--lease-wait`; zero: do not wait).
    pub wait: Duration,
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
    /// How often the holder renews its lease while it holds it.
    pub renew_every: Duration,
    /// The run's output folder, noted in the record.
    pub out: Option<PathBuf>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            dir: None,
            wait: Duration::ZERO,
            ttl: Duration::from_secs(600),
            renew_every: Duration::from_secs(60),
            out: None,
        }
    }
}

/// What went wrong with the lease directory or a lease's files.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot use the lease directory {}: {source}; pass --lease-dir DIR (or set HILSEC_LEASE_DIR) to a folder every user of the bench can write", dir.display())]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open or lock {}: {source}; check that the lease directory is writable, or pass another --lease-dir", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the lease record {}: {source}; check the lease directory's permissions (it should be 1777) and that the record is a plain file (not a symlink)", path.display())]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The record on disk names another holder (another host recovered the lease as stale).
    #[error("the lease record {} now names {by}, not this run; left as it is", path.display())]
    Taken { path: PathBuf, by: String },
}

/// The lease key of a unit, when it takes a lease: a physical unit always (its `lease`, else
/// `<model>/<unit name>`); an emulated unit only when its board file sets `lease` (its
/// processes are otherwise private to its run).
pub fn unit_key(unit: &Unit, model: &Model) -> Option<String> {
    match (&unit.lease, model.emulator.is_some()) {
        (Some(k), _) => Some(k.clone()),
        (None, false) => Some(format!("{}/{}", model.name, unit.name)),
        (None, true) => None,
    }
}

/// The lease directory: `explicit` (`--lease-dir`), else `$HILSEC_LEASE_DIR`, else
/// `/run/lock/hilsec` when `/run/lock` exists and is writable, else `<temp>/hilsec-leases`.
pub fn lease_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(d) = explicit {
        return d.to_path_buf();
    }
    if let Some(d) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let run_lock = Path::new("/run/lock");
    let writable = run_lock.is_dir()
        && rustix::fs::access(
            run_lock,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .is_ok();
    if writable {
        run_lock.join("hilsec")
    } else {
        std::env::temp_dir().join("hilsec-leases")
    }
}

/// A key as a file-name stem: letters, digits, '-', '_' and '.' kept, anything else '_'; a key
/// that needed changes (or is long) gets a hash of the original, so "a/b" and "a_b" stay apart.
/// The record keeps the original key.
pub fn file_stem(key: &str) -> String {
    use sha2::Digest as _;
    let mut stem: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let changed = stem != key || key.is_empty() || key.starts_with('.') || key.len() > 64;
    if changed {
        stem = stem.trim_start_matches('.').chars().take(64).collect();
        let hash = sha2::Sha256::digest(key.as_bytes());
        let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        if stem.is_empty() {
            stem = hex;
        } else {
            stem = format!("{stem}-{hex}");
        }
    }
    stem
}

/// The record of who holds a lease (`<stem>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The lease key as the board file gave it.
    pub key: String,
    /// The user name of the holder.
    pub holder: String,
    pub host: String,
    pub pid: u32,
    /// When the holder's process started (clock ticks after boot, from `/proc`), so that a
    /// pid reused by another process is not taken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// When the lease was taken (RFC 3339, UTC).
    pub started: String,
    /// When the lease ends unless renewed (RFC 3339, UTC).
    pub expires: String,
    /// The run's output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
    /// The holder's command line (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// Whether a record's holder process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// On another host: cannot be told from here.
    Unknown,
}

impl LeaseRecord {
    /// "alice@bench2 pid 4242 since 2026-12-02T10:02:11Z".
    /// Control characters of the record (anyone who can write the folder writes it) are shown
    /// as `?`.
    pub fn describe(&self) -> String {
        format!(
            "{}@{} pid {} since {}",
            printable(&self.holder),
            printable(&self.host),
            self.pid,
            printable(&self.started)
        )
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&self.expires).ok()
    }

    /// An unreadable expiry counts as expired: such a record cannot hold a unit forever.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at().is_none_or(|t| t <= now)
    }

    /// Whether `other` is the record of the same holder's same lease (its expiry aside).
    pub fn same_holder(&self, other: &LeaseRecord) -> bool {
        self.key == other.key
            && self.host == other.host
            && self.pid == other.pid
            && self.pid_start == other.pid_start
            && self.started == other.started
    }

    pub fn on_this_host(&self) -> bool {
        self.host == host_name()
    }

    pub fn liveness(&self) -> Liveness {
        if !self.on_this_host() {
            return Liveness::Unknown;
        }
        if process_alive(self.pid, self.pid_start) {
            Liveness::Alive
        } else {
            Liveness::Dead
        }
    }
}

/// Who holds a lease another run could not take.
#[derive(Debug, Clone)]
pub struct HeldBy {
    pub key: String,
    /// The holder's record (absent while a holder that just took the lock writes it).
    pub record: Option<LeaseRecord>,
    /// The pid holding the lock, per `/proc/locks`, when known.
    pub lock_pid: Option<u32>,
}

impl HeldBy {
    /// "alice@bench2 pid 4242 since 2026-12-02T10:02:11Z", or what is known without a record.
    pub fn describe(&self) -> String {
        match (&self.record, self.lock_pid) {
            // A new holder that has not replaced the record of a dead one yet.
            (Some(r), Some(p)) if p != 0 && r.pid != p && r.liveness() == Liveness::Dead => {
                format!(
                    "pid {p} on this host (the lease record still names {}, which has ended)",
                    r.describe()
                )
            }
            (Some(r), _) => r.describe(),
            (None, Some(p)) => format!("pid {p} on this host (no lease record yet)"),
            (None, None) => "another process (no lease record yet)".to_string(),
        }
    }

    /// Like [`HeldBy::describe`], with the time of day only ("... since 10:02:11").
    pub fn describe_short(&self) -> String {
        match &self.record {
            Some(r)
                if self
                    .lock_pid
                    .is_none_or(|p| p == r.pid || r.liveness() != Liveness::Dead) =>
            {
                let since = printable(r.started.get(11..19).unwrap_or(&r.started));
                format!(
                    "{}@{} pid {} since {since}",
                    printable(&r.holder),
                    printable(&r.host),
                    r.pid
                )
            }
            _ => self.describe(),
        }
    }
}

/// The outcome of one attempt to take a lease.
pub enum Attempt {
    /// Ours; `recovered` says whose stale lease was taken over, if any.
    Acquired {
        lease: Lease,
        recovered: Option<String>,
    },
    /// Another run holds it.
    Held(HeldBy),
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Acquired { lease, recovered } => f
                .debug_struct("Acquired")
                .field("key", &lease.key())
                .field("recovered", recovered)
                .finish(),
            Attempt::Held(h) => f.debug_tuple("Held").field(h).finish(),
        }
    }
}

/// A lease held: released (record removed, lock dropped) when dropped. Renewed in the
/// background while held (a tokio task inside a runtime, else a thread).
pub struct Lease {
    inner: Arc<Inner>,
    _renewal: Option<Renewal>,
}

struct Inner {
    file: File,
    dir: PathBuf,
    stem: String,
    ttl: Duration,
    state: Mutex<InnerState>,
}

struct InnerState {
    record: LeaseRecord,
    released: bool,
}

/// Ends the renewal when dropped.
enum Renewal {
    Task(tokio::task::AbortHandle),
    /// The thread ends when this sender is dropped.
    Thread(#[allow(dead_code)] std::sync::mpsc::Sender<()>),
}

impl Drop for Renewal {
    fn drop(&mut self) {
        if let Renewal::Task(h) = self {
            h.abort();
        }
    }
}

impl Lease {
    pub fn key(&self) -> String {
        self.record().key
    }

    /// The record as last written.
    pub fn record(&self) -> LeaseRecord {
        match self.inner.state.lock() {
            Ok(s) => s.record.clone(),
            Err(p) => p.into_inner().record.clone(),
        }
    }

    /// Pushes the expiry to `now + ttl` (done in the background; callable any time).
    pub fn renew(&self) -> Result<(), LeaseError> {
        self.inner.renew()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self._renewal = None;
        self.inner.release();
    }
}

impl Inner {
    fn record_path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stem))
    }

    fn renew(&self) -> Result<(), LeaseError> {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if st.released {
            return Ok(());
        }
        // Only our own record is rewritten: another host may have recovered the lease.
        let path = self.record_path();
        if let Some(on_disk) = read_record(&path) {
            if !on_disk.same_holder(&st.record) {
                return Err(LeaseError::Taken {
                    path,
                    by: on_disk.describe(),
                });
            }
        }
        st.record.expires = rfc3339(SystemTime::now() + self.ttl);
        write_record(&self.dir, &self.stem, &st.record)
    }

    fn release(&self) {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if st.released {
            return;
        }
        st.released = true;
        // The record first: once the lock is free, a record beside it means a crash. Only our
        // own: another host may have recovered the lease.
        let path = self.record_path();
        if read_record(&path).is_some_and(|r| r.same_holder(&st.record))
            && fs::remove_file(&path).is_err()
        {
            // Another user's file in the sticky directory: emptied (an empty record is none).
            if let Ok(f) = open_file(&path, true) {
                let _ = f.set_len(0);
            }
        }
        let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
    }
}

/// One attempt to take the lease `key` in `dir`, without waiting.
pub fn try_acquire(dir: &Path, key: &str, s: &LeaseSettings) -> Result<Attempt, LeaseError> {
    ensure_dir(dir)?;
    let stem = file_stem(key);
    let lock_path = dir.join(format!("{stem}.lock"));
    let record_path = dir.join(format!("{stem}.json"));
    let file = open_lock(&lock_path)?;
    // The key in the lock file itself, so a free lease is listed by its key too.
    if file.metadata().is_ok_and(|m| m.len() == 0) {
        use std::os::unix::fs::FileExt as _;
        let _ = file.write_all_at(format!("{key}\n").as_bytes(), 0);
    }
    // A `hilsec lease list` probe holds a free lock for an instant: tried thrice.
    let mut locked = Err(rustix::io::Errno::WOULDBLOCK);
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        locked = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if !matches!(locked, Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR)
        {
            break;
        }
    }
    match locked {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
            return Ok(Attempt::Held(HeldBy {
                key: key.to_string(),
                record: read_record(&record_path),
                lock_pid: lock_holder(&file),
            }));
        }
        Err(e) => {
            return Err(LeaseError::Lock {
                path: lock_path,
                source: e.into(),
            })
        }
    }
    let now = SystemTime::now();
    let mut recovered = match read_record(&record_path) {
        Some(prev) if !prev.on_this_host() && !prev.is_expired(now) => {
            // Another host sharing the directory, whose lock does not reach this one.
            return Ok(Attempt::Held(HeldBy {
                key: key.to_string(),
                record: Some(prev),
                lock_pid: None,
            }));
        }
        Some(prev) => {
            let why = match prev.liveness() {
                Liveness::Dead => "which had died".to_string(),
                _ if prev.is_expired(now) => {
                    format!("which had expired at {} (not renewed)", prev.expires)
                }
                _ => "whose process no longer held its lock".to_string(),
            };
            Some(format!(
                "recovered a stale lease of {}, {why} (lease {key})",
                prev.describe()
            ))
        }
        // No record, or an unreadable one (emptied at release, half written): free.
        None => None,
    };
    let record = LeaseRecord {
        key: key.to_string(),
        holder: user_name(),
        host: host_name(),
        pid: std::process::id(),
        pid_start: process_start(std::process::id()),
        started: rfc3339(now),
        expires: rfc3339(now + s.ttl),
        out: s.out.as_ref().map(|o| {
            std::path::absolute(o)
                .unwrap_or_else(|_| o.clone())
                .display()
                .to_string()
        }),
        command: Some(command_line()),
    };
    match write_record(dir, &stem, &record) {
        Err(e) => {
            // The lock is what excludes on this host: the unit is ours, but say what is missing.
            let note = format!("the lease record could not be written ({e}); `hilsec lease list` cannot name this run as the holder");
            recovered = Some(match recovered {
                Some(r) => format!("{r}; {note}"),
                None => note,
            });
        }
        Ok(()) => {
            // Another host may have recovered the same stale lease at the same time (its lock
            // does not reach this host): whoever's record is there holds the unit.
            if let Some(other) = read_record(&record_path).filter(|r| !r.same_holder(&record)) {
                return Ok(Attempt::Held(HeldBy {
                    key: key.to_string(),
                    record: Some(other),
                    lock_pid: None,
                }));
            }
        }
    }
    let inner = Arc::new(Inner {
        file,
        dir: dir.to_path_buf(),
        stem,
        ttl: s.ttl,
        state: Mutex::new(InnerState {
            record,
            released: false,
        }),
    });
    let renewal = start_renewal(Arc::downgrade(&inner), s.renew_every);
    Ok(Attempt::Acquired {
        lease: Lease {
            inner,
            _renewal: renewal,
        },
        recovered,
    })
}

/// Takes the lease `key`, waiting up to `s.wait` while another run holds it; `waiting` is
/// called at every try that found it held, with the time left.
pub async fn acquire(
    dir: &Path,
    key: &str,
    s: &LeaseSettings,
    mut waiting: impl FnMut(&HeldBy, Duration),
) -> Result<Attempt, LeaseError> {
    let t0 = Instant::now();
    loop {
        // File I/O (and a lock probe's short retry) off the runtime's worker threads.
        let (d, k, st) = (dir.to_path_buf(), key.to_string(), s.clone());
        let attempt = tokio::task::spawn_blocking(move || try_acquire(&d, &k, &st))
            .await
            .map_err(|e| LeaseError::Lock {
                path: dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })??;
        match attempt {
            Attempt::Held(h) if t0.elapsed() < s.wait => {
                let left = s.wait.saturating_sub(t0.elapsed());
                waiting(&h, left);
                tokio::time::sleep(left.min(POLL)).await;
            }
            other => return Ok(other),
        }
    }
}

fn start_renewal(inner: Weak<Inner>, every: Duration) -> Option<Renewal> {
    let every = every.max(Duration::from_millis(100));
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let task = rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match inner.upgrade() {
                    Some(i) => {
                        // File I/O off the runtime's worker threads.
                        let _ = tokio::task::spawn_blocking(move || i.renew()).await;
                    }
                    None => break,
                }
            }
        });
        return Some(Renewal::Task(task.abort_handle()));
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("hilsec-lease".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                match inner.upgrade() {
                    Some(i) => {
                        let _ = i.renew();
                    }
                    None => break,
                }
            }
        })
        .ok()
        .map(|_| Renewal::Thread(tx))
}

/// The lease directory, created (world-writable, sticky: 1777) when missing.
pub fn ensure_dir(dir: &Path) -> Result<(), LeaseError> {
    let err = |source| LeaseError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    if !dir.is_dir() {
        let created = match fs::create_dir(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(err)?;
                true
            }
            Err(e) => return Err(err(e)),
        };
        if created {
            // Every user of the bench takes leases here; the sticky bit keeps each user's
            // files from being replaced or removed by another (records are rewritten in place).
            fs::set_permissions(dir, fs::Permissions::from_mode(0o1777)).map_err(err)?;
        }
    } else if let Ok(m) = fs::symlink_metadata(dir) {
        // Made 0777 by an older hilsec: sticky now, when it is ours to change.
        if m.is_dir()
            && m.mode() & 0o1777 == 0o777
            && m.uid() == rustix::process::geteuid().as_raw()
        {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o1777));
        }
    }
    Ok(())
}

/// Flags for every file of the lease directory: never through a symlink, never blocking on a
/// FIFO planted there, not inherited by child processes.
fn open_flags() -> i32 {
    use rustix::fs::OFlags;
    (OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32
}

/// Opens an existing file of the lease directory: a regular file, never through a symlink.
fn open_existing(path: &Path, write: bool) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(open_flags())
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    // Ours but not 0666 (an older hilsec, or the umask): another user's run must use it too.
    if write && meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o777 != 0o666 {
        let _ = f.set_permissions(fs::Permissions::from_mode(0o666));
    }
    Ok(f)
}

/// Opens a file of the lease directory (see [`open_existing`]), creating it when missing:
/// `O_EXCL` (a symlink planted meanwhile is not followed) and mode 0666 whatever the umask.
fn open_file(path: &Path, write: bool) -> std::io::Result<File> {
    match open_existing(path, write) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => return other,
    }
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(open_flags())
        .open(path)
    {
        Ok(f) => {
            f.set_permissions(fs::Permissions::from_mode(0o666))?;
            Ok(f)
        }
        // Created by another process meanwhile.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => open_existing(path, write),
        Err(e) => Err(e),
    }
}

fn open_lock(path: &Path) -> Result<File, LeaseError> {
    // Another user's lock file of an older hilsec (0644) is opened for reading: flock needs no
    // more.
    match open_file(path, true) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            open_existing(path, false).map_err(|source| LeaseError::Lock {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(LeaseError::Lock {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The record beside a lock, if there is a readable one (an empty or half-written record is
/// none).
fn read_record(path: &Path) -> Option<LeaseRecord> {
    use std::io::Read as _;
    let f = open_existing(path, false).ok()?;
    let mut text = String::new();
    f.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes a record in place, while its lease's lock is held: the new text over the old, then
/// cut to length (a reader in between sees an unreadable record, never a wrong one). No
/// temporary file: in the sticky directory, only its owner could rename over a record.
fn write_record(dir: &Path, stem: &str, record: &LeaseRecord) -> Result<(), LeaseError> {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join(format!("{stem}.json"));
    let err = |source| LeaseError::Record {
        path: path.clone(),
        source,
    };
    let mut text = serde_json::to_string_pretty(record).map_err(|e| err(e.into()))?;
    text.push('\n');
    let f = open_file(&path, true).map_err(err)?;
    f.write_all_at(text.as_bytes(), 0).map_err(err)?;
    f.set_len(text.len() as u64).map_err(err)
}

/// The pid holding an flock on `file`, from `/proc/locks` (Linux), without touching the lock.
fn lock_holder(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    lock_holders().get(&(meta.dev(), meta.ino())).copied()
}

/// `/proc/locks`' FLOCK entries: (device, inode) → pid. `None`-like (empty) where unreadable.
fn lock_holders() -> std::collections::HashMap<(u64, u64), u32> {
    let mut out = std::collections::HashMap::new();
    let Ok(text) = fs::read_to_string("/proc/locks") else {
        return out;
    };
    for line in text.lines() {
        // "1: FLOCK  ADVISORY  WRITE 27626 fe:00:5496965 0 EOF"; blocked waiters have "->".
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            continue;
        }
        let Ok(pid) = f[4].parse::<u32>() else {
            continue;
        };
        let parts: Vec<&str> = f[5].split(':').collect();
        if parts.len() != 3 {
            continue;
        }
        let (Ok(maj), Ok(min), Ok(ino)) = (
            u32::from_str_radix(parts[0], 16),
            u32::from_str_radix(parts[1], 16),
            parts[2].parse::<u64>(),
        ) else {
            continue;
        };
        out.entry((rustix::fs::makedev(maj, min), ino))
            .or_insert(pid);
    }
    out
}

/// Whether `pid` runs on this host (a zombie does not), and is the process that started at
/// `start` when that is known.
pub fn process_alive(pid: u32, start: Option<u64>) -> bool {
    if Path::new("/proc/self/stat").exists() {
        let Some((state, started)) = proc_stat(pid) else {
            return false;
        };
        if state == 'Z' || state == 'X' {
            return false;
        }
        return match (start, started) {
            (Some(want), Some(got)) => want == got,
            _ => true,
        };
    }
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// State letter and start time (field 22) of `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, Option<u64>)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19).and_then(|s| s.parse().ok())))
}

fn process_start(pid: u32) -> Option<u64> {
    proc_stat(pid).and_then(|(_, s)| s)
}

/// This host's name.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// The user running hilsec: `$USER`, `$LOGNAME`, the passwd entry of the uid, else "uid N".
pub fn user_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    let uid = rustix::process::getuid().as_raw();
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn command_line() -> String {
    let mut c = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if c.len() > MAX_COMMAND_LEN {
        let mut cut = MAX_COMMAND_LEN;
        while !c.is_char_boundary(cut) {
            cut -= 1;
        }
        c.truncate(cut);
        c.push('…');
    }
    c
}

/// `text` with its control characters (escape sequences among them) shown as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The state of a lease as `hilsec lease list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// A live holder.
    Held,
    /// A holder that did not release and no longer holds the lock (its process died).
    Stale,
    /// A holder that stopped renewing (hangs, or died on another host).
    Expired,
    Free,
    /// The lock could not be examined (its file unreadable): not known to be free.
    Unknown,
}

impl std::fmt::Display for LeaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaseState::Held => "held",
            LeaseState::Stale => "stale",
            LeaseState::Expired => "expired",
            LeaseState::Free => "free",
            LeaseState::Unknown => "unknown",
        })
    }
}

/// One lease of the directory, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseEntry {
    /// The key (from the record; the file stem when there is no record).
    pub key: String,
    pub state: LeaseState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<LeaseRecord>,
    /// The pid holding the lock now, per `/proc/locks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_pid: Option<u32>,
    /// The lock file.
    pub lock_file: PathBuf,
}

/// Every lease of `dir` (a missing directory has none), sorted by key. Who holds a lock comes
/// from `/proc/locks`; a lock it does not list (free, or held from another PID namespace, which
/// `/proc/locks` hides) is probed: a shared lock taken without waiting and dropped at once.
pub fn list(dir: &Path) -> Result<Vec<LeaseEntry>, LeaseError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LeaseError::Dir {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    let holders = lock_holders();
    let now = SystemTime::now();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("lock") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let record = read_record(&dir.join(format!("{stem}.json")));
        let lock_key = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
            .filter(|k| file_stem(k) == stem);
        // Some(held), or None when the lock cannot be examined.
        let (locked, lock_pid) = match fs::symlink_metadata(&path)
            .ok()
            .and_then(|m| holders.get(&(m.dev(), m.ino())).copied())
        {
            Some(pid) => (Some(true), Some(pid)),
            None => (probe_lock(&path), None),
        };
        let state = match (&record, locked) {
            (None, Some(false)) => LeaseState::Free,
            (None, Some(true)) => LeaseState::Held,
            (None, None) => LeaseState::Unknown,
            (Some(r), Some(true)) if r.is_expired(now) => LeaseState::Expired,
            (Some(_), Some(true)) => LeaseState::Held,
            (Some(r), Some(false)) if r.on_this_host() => LeaseState::Stale,
            (Some(r), None) if r.on_this_host() => LeaseState::Unknown,
            (Some(r), _) if r.is_expired(now) => LeaseState::Expired,
            (Some(_), _) => LeaseState::Held,
        };
        out.push(LeaseEntry {
            key: record
                .as_ref()
                .map(|r| r.key.clone())
                .or(lock_key)
                .unwrap_or_else(|| stem.to_string()),
            state,
            record,
            lock_pid,
            lock_file: path,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Whether the lock `path` is held, by a shared lock taken without waiting and dropped at once
/// (a run taking the lease at that instant tries again); `None` when it cannot be probed.
fn probe_lock(path: &Path) -> Option<bool> {
    use rustix::fs::FlockOperation;
    let f = open_existing(path, false).ok()?;
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(&f, FlockOperation::Unlock);
            Some(false)
        }
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Some(true),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            out: Some(PathBuf::from("/tmp/results")),
            ..Default::default()
        }
    }

    fn acquired(a: Attempt) -> (Lease, Option<String>) {
        match a {
            Attempt::Acquired { lease, recovered } => (lease, recovered),
            Attempt::Held(h) => panic!("held by {}", h.describe()),
        }
    }

    #[test]
    fn keys_become_safe_distinct_file_names() {
        assert_eq!(file_stem("bench-3_cam.a"), "bench-3_cam.a");
        let a = file_stem("bench-3/cam-a");
        assert!(a.starts_with("bench-3_cam-a-"), "{a}");
        assert_ne!(a, file_stem("bench-3_cam-a"));
        assert_ne!(a, file_stem("bench-3:cam-a"));
        for k in ["../../etc/passwd", ".hidden", "", "a b/ü", &"x".repeat(300)] {
            let s = file_stem(k);
            assert!(
                !s.is_empty() && !s.starts_with('.') && s.len() <= 73,
                "{k:?} → {s:?}"
            );
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{s}"
            );
        }
    }

    #[test]
    fn records_round_trip_and_expire() {
        let r = LeaseRecord {
            key: "bench-3/cam-a".into(),
            holder: "alice".into(),
            host: "bench2".into(),
            pid: 4242,
            pid_start: Some(77),
            started: "2026-12-02T10:02:11Z".into(),
            expires: "2026-12-02T10:12:11Z".into(),
            out: Some("/srv/results".into()),
            command: None,
        };
        let text = serde_json::to_string(&r).expect("serialises");
        assert!(!text.contains("command"), "{text}");
        let back: LeaseRecord = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, r);
        assert_eq!(
            r.describe(),
            "alice@bench2 pid 4242 since 2026-12-02T10:02:11Z"
        );
        let at = r.expires_at().expect("expiry");
        assert!(!r.is_expired(at - Duration::from_secs(1)));
        assert!(r.is_expired(at));
        let bad = LeaseRecord {
            expires: "soon".into(),
            ..r
        };
        assert!(bad.is_expired(SystemTime::UNIX_EPOCH), "unreadable expiry");
    }

    #[test]
    fn dead_and_live_pids_are_told_apart() {
        let me = std::process::id();
        assert!(process_alive(me, None));
        assert!(process_alive(me, process_start(me)));
        assert!(
            !process_alive(me, process_start(me).map(|s| s + 1)),
            "reused pid"
        );
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // A zombie (exited, not yet reaped) is dead too.
        let t0 = Instant::now();
        while process_alive(pid, None) && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!process_alive(pid, None), "exited child {pid}");
        child.wait().expect("reap");
        assert!(!process_alive(pid, None));
    }

    #[test]
    fn a_lease_excludes_until_dropped_and_records_its_holder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("leases");
        let (lease, note) = acquired(try_acquire(&dir, "bench-3/cam-a", &settings()).expect("ok"));
        assert_eq!(note, None);
        let mode = fs::metadata(&dir).expect("dir").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1777);
        let rec = lease.record();
        assert_eq!(
            (rec.pid, rec.key.as_str()),
            (std::process::id(), "bench-3/cam-a")
        );
        assert_eq!(rec.out.as_deref(), Some("/tmp/results"));
        // A second open file description is refused, as another process would be.
        match try_acquire(&dir, "bench-3/cam-a", &settings()).expect("ok") {
            Attempt::Held(h) => {
                assert_eq!(h.record.as_ref(), Some(&rec));
                assert!(
                    h.describe().contains(&format!("pid {}", rec.pid)),
                    "{}",
                    h.describe()
                );
            }
            a => panic!("{a:?}"),
        }
        let listed = list(&dir).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, LeaseState::Held);
        assert_eq!(listed[0].key, "bench-3/cam-a");
        let stem = file_stem("bench-3/cam-a");
        let rec_mode = fs::metadata(dir.join(format!("{stem}.json")))
            .expect("record")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(rec_mode, 0o666);
        let lock_mode = fs::metadata(dir.join(format!("{stem}.lock")))
            .expect("lock")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(lock_mode, 0o666);
        drop(lease);
        assert!(!dir.join(format!("{stem}.json")).exists(), "record removed");
        let listed = list(&dir).expect("list");
        assert_eq!(listed[0].state, LeaseState::Free);
        assert_eq!(
            listed[0].key, "bench-3/cam-a",
            "the key, from the lock file"
        );
        let (_again, note) = acquired(try_acquire(&dir, "bench-3/cam-a", &settings()).expect("ok"));
        assert_eq!(note, None, "a released lease is not stale");
    }

    #[test]
    fn stale_records_are_recovered_with_a_note() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        ensure_dir(dir).expect("dir");
        let stem = file_stem("k");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("reap");
        let now = SystemTime::now();
        let died = LeaseRecord {
            key: "k".into(),
            holder: "alice".into(),
            host: host_name(),
            pid: dead,
            pid_start: None,
            started: rfc3339(now),
            expires: rfc3339(now + Duration::from_secs(600)),
            out: None,
            command: None,
        };
        write_record(dir, &stem, &died).expect("write");
        assert_eq!(list(dir).map(|_| ()).ok(), Some(()));
        // No lock file yet: list shows only lock files; create it through an attempt.
        let (lease, note) = acquired(try_acquire(dir, "k", &settings()).expect("ok"));
        let note = note.expect("a note");
        assert!(
            note.starts_with(&format!(
                "recovered a stale lease of alice@{} pid {dead}",
                host_name()
            )) && note.contains("which had died"),
            "{note}"
        );
        drop(lease);

        // Another host's record: held until it expires, then stale.
        let elsewhere = LeaseRecord {
            host: "some-other-bench-host".into(),
            pid: 1,
            ..died.clone()
        };
        write_record(dir, &stem, &elsewhere).expect("write");
        match try_acquire(dir, "k", &settings()).expect("ok") {
            Attempt::Held(h) => assert!(h
                .describe()
                .starts_with("alice@some-other-bench-host pid 1")),
            a => panic!("{a:?}"),
        }
        assert_eq!(list(dir).expect("list")[0].state, LeaseState::Held);
        let expired = LeaseRecord {
            expires: rfc3339(now - Duration::from_secs(5)),
            ..elsewhere
        };
        write_record(dir, &stem, &expired).expect("write");
        assert_eq!(list(dir).expect("list")[0].state, LeaseState::Expired);
        let (_lease, note) = acquired(try_acquire(dir, "k", &settings()).expect("ok"));
        assert!(note.expect("note").contains("which had expired at"));
    }

    #[test]
    fn a_dead_holder_is_listed_stale_and_renewal_moves_the_expiry() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let s = LeaseSettings {
            ttl: Duration::from_secs(2),
            renew_every: Duration::from_millis(200),
            ..settings()
        };
        let (lease, _) = acquired(try_acquire(dir, "renewed", &s).expect("ok"));
        let first = lease.record().expires_at().expect("expiry");
        let t0 = Instant::now();
        while lease.record().expires_at().expect("expiry") <= first
            && t0.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            lease.record().expires_at().expect("expiry") > first,
            "renewed"
        );
        // A record left by a process that died: its lock is free, so it is stale.
        let stale = LeaseRecord {
            pid: u32::MAX - 1,
            key: "gone".into(),
            ..lease.record()
        };
        write_record(dir, &file_stem("gone"), &stale).expect("write");
        open_lock(&dir.join(format!("{}.lock", file_stem("gone")))).expect("lock file");
        let listed = list(dir).expect("list");
        let gone = listed.iter().find(|e| e.key == "gone").expect("listed");
        assert_eq!(gone.state, LeaseState::Stale);
        let mine = listed.iter().find(|e| e.key == "renewed").expect("listed");
        assert_eq!(mine.state, LeaseState::Held);
    }

    #[test]
    fn symlinks_are_never_followed_and_unreadable_records_are_free() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("leases");
        ensure_dir(&dir).expect("dir");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious\n").expect("victim");
        // A planted record symlink: the run's record is not written through it.
        let stem = file_stem("sym");
        std::os::unix::fs::symlink(&victim, dir.join(format!("{stem}.json"))).expect("symlink");
        let (lease, note) = acquired(try_acquire(&dir, "sym", &settings()).expect("ok"));
        assert!(
            note.as_deref()
                .is_some_and(|n| n.contains("could not be written")),
            "{note:?}"
        );
        drop(lease);
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
        // A planted lock symlink: refused.
        let stem2 = file_stem("sym2");
        std::os::unix::fs::symlink(&victim, dir.join(format!("{stem2}.lock"))).expect("symlink");
        assert!(matches!(
            try_acquire(&dir, "sym2", &settings()),
            Err(LeaseError::Lock { .. })
        ));
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
        // No temporary files anywhere.
        assert!(fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));

        // A half-written (here: empty) record beside a free lock is just free.
        let stem3 = file_stem("half");
        open_lock(&dir.join(format!("{stem3}.lock"))).expect("lock file");
        fs::write(dir.join(format!("{stem3}.json")), "{\"key\": \"ha").expect("record");
        let e = list(&dir).expect("list");
        let half = e.iter().find(|e| e.key == stem3).expect("listed");
        assert_eq!(half.state, LeaseState::Free);
        let (lease, note) = acquired(try_acquire(&dir, "half", &settings()).expect("ok"));
        assert_eq!(note, None);
        // Rewritten in place, complete.
        let on_disk = read_record(&dir.join(format!("{stem3}.json"))).expect("record");
        assert!(on_disk.same_holder(&lease.record()));
        drop(lease);
    }

    #[test]
    fn renewal_and_release_leave_another_holders_record_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let (lease, _) = acquired(try_acquire(dir, "k2", &settings()).expect("ok"));
        let stem = file_stem("k2");
        let elsewhere = LeaseRecord {
            host: "some-other-bench-host".into(),
            pid: 7,
            ..lease.record()
        };
        write_record(dir, &stem, &elsewhere).expect("write");
        assert!(matches!(lease.renew(), Err(LeaseError::Taken { .. })));
        assert_eq!(
            read_record(&dir.join(format!("{stem}.json"))),
            Some(elsewhere.clone())
        );
        drop(lease);
        assert_eq!(
            read_record(&dir.join(format!("{stem}.json"))),
            Some(elsewhere),
            "not removed: it is not ours"
        );
    }

    #[test]
    fn a_lock_held_where_proc_locks_cannot_see_is_probed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let path = dir.join("p.lock");
        let f = open_lock(&path).expect("lock");
        assert_eq!(probe_lock(&path), Some(false));
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("lock");
        assert_eq!(probe_lock(&path), Some(true));
        assert_eq!(probe_lock(&dir.join("missing.lock")), None);
    }
}
