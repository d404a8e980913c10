//! Replica logs: every replica's stdout and stderr in `<state_dir>/logs/<slug>/<replica>.log`,
//! rotated at 10 MiB with three old files kept (`.1` newest to `.3` oldest), and [`show`] for
//! `lull logs NAME [--follow]`.
//!
//! The pipes are drained by tasks that hand whole lines, in pieces of up to 16 KiB, to a bounded
//! queue (4 MiB); a writer task empties it into the file in batches. When the disk cannot keep up
//! and the queue is full, output is dropped and counted rather than letting the replica block on
//! a full pipe (a stalled model server is worse than a gap in its log), and the file says how much
//! was lost. Lull's own notes about a replica (started, exited, restarting) go to the same file, marked
//! `[lull]`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lull_core::ReplicaId;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// Size at which a log file is rotated.
pub const ROTATE_BYTES: u64 = 10 * 1024 * 1024;

/// Rotated files kept besides the current one.
pub const KEEP_ROTATED: u32 = 3;

/// Largest piece of output queued at once; a longer line is split.
const MAX_LINE: usize = 16 * 1024;

/// Pieces queued between a replica's pipes and the disk; with `MAX_LINE` this bounds the memory
/// one slow disk can take per replica (4 MiB).
const QUEUE_LINES: usize = 256;

/// Most bytes written to the file in one go: large batches keep up with a chatty replica.
const BATCH_BYTES: usize = 1024 * 1024;

/// Once the replica is gone, the writer stops after this long without output...
const LINGER: Duration = Duration::from_secs(1);

/// ...or this long after the replica went, whichever comes first: a process that escaped the
/// group may hold the pipe open, and write to it, forever.
const LINGER_MAX: Duration = Duration::from_secs(10);

/// How often `show --follow` looks for new output and new replicas.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Errors of reading logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The deployment name cannot name a log directory.
    #[error("`{0}` is not a deployment name")]
    InvalidName(String),
    /// Lull has no logs of the deployment.
    #[error("no logs of deployment `{slug}` in {}: it has not run on this machine with this state directory", .dir.display())]
    NoLogs {
        /// The deployment.
        slug: String,
        /// Where they were looked for.
        dir: PathBuf,
    },
    /// A log file or directory could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// What.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The output could not be written.
    #[error("cannot write the logs out: {0}")]
    Write(#[source] io::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The directory of a deployment's logs.
pub fn deployment_dir(state_dir: &Path, slug: &str) -> PathBuf {
    state_dir.join("logs").join(slug)
}

/// Writes every log file of deployment `slug` to `out`, replica by replica, oldest rotation
/// first, each line prefixed with its replica (`sentiment-1 | ...`). With `follow`, then keeps
/// writing new lines as replicas write them, new replicas included, until `out` fails or the
/// future is dropped.
pub async fn show(
    state_dir: &Path,
    slug: &str,
    follow: bool,
    mut out: impl AsyncWrite + Unpin,
) -> Result<()> {
    if slug.is_empty() || slug.contains(['/', '\\']) || slug.starts_with('.') {
        return Err(Error::InvalidName(slug.to_owned()));
    }
    let dir = deployment_dir(state_dir, slug);
    if !fs::try_exists(&dir).await.unwrap_or(false) {
        return Err(Error::NoLogs {
            slug: slug.to_owned(),
            dir,
        });
    }
    let mut tails: BTreeMap<ReplicaOrder, Tail> = BTreeMap::new();
    for (order, rotated) in list_replicas(&dir).await? {
        let mut tail = Tail::new(order.name.clone(), dir.join(format!("{}.log", order.name)));
        for n in rotated {
            let path = dir.join(format!("{}.log.{n}", order.name));
            tail.copy_file(&path, &mut out).await?;
        }
        tail.poll(&mut out).await?;
        if !follow {
            tail.finish(&mut out).await?;
        }
        tails.insert(order, tail);
    }
    if !follow {
        return out.flush().await.map_err(Error::Write);
    }
    loop {
        out.flush().await.map_err(Error::Write)?;
        tokio::time::sleep(FOLLOW_POLL).await;
        for (order, _) in list_replicas(&dir).await? {
            if !tails.contains_key(&order) {
                let path = dir.join(format!("{}.log", order.name));
                tails.insert(order.clone(), Tail::new(order.name, path));
            }
        }
        for tail in tails.values_mut() {
            tail.poll(&mut out).await?;
        }
    }
}

/// Replicas sort by their number, so `app-2` comes before `app-10`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ReplicaOrder {
    number: u64,
    name: String,
}

impl ReplicaOrder {
    fn new(name: &str) -> Self {
        let number = name
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(u64::MAX);
        Self {
            number,
            name: name.to_owned(),
        }
    }
}

/// The replicas with logs in `dir`, each with its rotated files' numbers, oldest first.
async fn list_replicas(dir: &Path) -> Result<BTreeMap<ReplicaOrder, Vec<u32>>> {
    let read_error = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = fs::read_dir(dir).await.map_err(read_error)?;
    let mut found: BTreeMap<ReplicaOrder, Vec<u32>> = BTreeMap::new();
    while let Some(entry) = entries.next_entry().await.map_err(read_error)? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(replica) = name.strip_suffix(".log") {
            found.entry(ReplicaOrder::new(replica)).or_default();
        } else if let Some((replica, n)) = name.rsplit_once(".log.")
            && let Ok(n) = n.parse::<u32>()
        {
            found.entry(ReplicaOrder::new(replica)).or_default().push(n);
        }
    }
    for rotated in found.values_mut() {
        rotated.sort_unstable_by(|a, b| b.cmp(a));
    }
    Ok(found)
}

/// Follows one replica's current log file across rotations.
struct Tail {
    prefix: String,
    path: PathBuf,
    file: Option<(File, u64)>,
    partial: Vec<u8>,
}

impl Tail {
    fn new(replica: String, path: PathBuf) -> Self {
        Self {
            prefix: format!("{replica} | "),
            path,
            file: None,
            partial: Vec::new(),
        }
    }

    /// Writes a whole (rotated) file.
    async fn copy_file(&mut self, path: &Path, out: &mut (impl AsyncWrite + Unpin)) -> Result<()> {
        let mut file = match File::open(path).await {
            Ok(file) => file,
            // Rotated away since it was listed: its lines are in the next file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        self.copy_to_end(&mut file, path, out).await
    }

    /// Writes what is new in the current file; when it was rotated, the rest of the old one
    /// first, then the new one from its start.
    async fn poll(&mut self, out: &mut (impl AsyncWrite + Unpin)) -> Result<()> {
        let path = self.path.clone();
        if let Some((mut file, inode)) = self.file.take() {
            self.copy_to_end(&mut file, &path, out).await?;
            match fs::metadata(&path).await {
                Ok(meta) if meta.ino() != inode => {}
                // The same file, or none there now (rotation in progress): keep reading it.
                _ => {
                    self.file = Some((file, inode));
                    return Ok(());
                }
            }
        }
        let mut file = match File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let inode = file
            .metadata()
            .await
            .map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?
            .ino();
        self.copy_to_end(&mut file, &path, out).await?;
        self.file = Some((file, inode));
        Ok(())
    }

    async fn copy_to_end(
        &mut self,
        file: &mut File,
        path: &Path,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<()> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if n == 0 {
                return Ok(());
            }
            self.partial.extend_from_slice(&buf[..n]);
            let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let rest = self.partial.split_off(end + 1);
            let lines = std::mem::replace(&mut self.partial, rest);
            let mut text = Vec::with_capacity(lines.len() + 16);
            for line in lines.split_inclusive(|&b| b == b'\n') {
                text.extend_from_slice(self.prefix.as_bytes());
                text.extend_from_slice(line);
            }
            out.write_all(&text).await.map_err(Error::Write)?;
        }
    }

    /// Writes a last line that had no newline.
    async fn finish(&mut self, out: &mut (impl AsyncWrite + Unpin)) -> Result<()> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let mut text = self.prefix.as_bytes().to_vec();
        text.append(&mut self.partial);
        text.push(b'\n');
        out.write_all(&text).await.map_err(Error::Write)
    }
}

/// The log of one replica, across its restarts: its pipes go in through [`ReplicaLog::attach`],
/// lull's notes through [`ReplicaLog::note`].
pub(crate) struct ReplicaLog {
    lines: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    /// Tells the writer the replica is gone, so it stops once the pipes are drained.
    _closed: DropGuard,
}

impl ReplicaLog {
    /// Starts the writer of `<dir>/<replica>.log` on `tasks`. A file that cannot be opened is
    /// reported once and the output discarded; the replica runs all the same.
    pub fn open(dir: PathBuf, replica: &ReplicaId, tasks: &TaskTracker) -> Self {
        let (lines, queue) = mpsc::channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let closed = CancellationToken::new();
        let path = dir.join(format!("{replica}.log"));
        tasks.spawn(write_lines(path, queue, dropped.clone(), closed.clone()));
        Self {
            lines,
            dropped,
            _closed: closed.drop_guard(),
        }
    }

    /// Drains a process's output into the log.
    pub fn attach<R: AsyncRead + Unpin + Send + 'static>(&self, pipe: Option<R>) {
        if let Some(pipe) = pipe {
            tokio::spawn(read_lines(pipe, self.lines.clone(), self.dropped.clone()));
        }
    }

    /// Writes one of lull's own lines about the replica.
    pub fn note(&self, what: impl fmt::Display) {
        queue(
            &self.lines,
            &self.dropped,
            format!("[lull] {what}\n").into_bytes(),
        );
    }
}

fn queue(lines: &mpsc::Sender<Vec<u8>>, dropped: &AtomicU64, line: Vec<u8>) {
    if let Err(mpsc::error::TrySendError::Full(line)) = lines.try_send(line) {
        dropped.fetch_add(line.len() as u64, Ordering::Relaxed);
    }
}

/// Reads a pipe to its end, queueing its output in pieces of whole lines, at most `MAX_LINE`
/// bytes each (a longer line is split).
async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    lines: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
) {
    let mut reader = BufReader::with_capacity(MAX_LINE, pipe);
    let mut piece = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) => {
                tracing::debug!(error = %e, "replica output pipe failed");
                break;
            }
        };
        if buf.is_empty() {
            break;
        }
        let window = &buf[..buf.len().min(MAX_LINE - piece.len())];
        let (take, complete) = match window.iter().rposition(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (window.len(), piece.len() + window.len() >= MAX_LINE),
        };
        piece.extend_from_slice(&window[..take]);
        reader.consume(take);
        if complete {
            queue(&lines, &dropped, std::mem::take(&mut piece));
        }
    }
    if !piece.is_empty() {
        piece.push(b'\n');
        queue(&lines, &dropped, piece);
    }
}

/// Empties the queue into the rotating file until every sender is gone, or, once the replica
/// is, until the output stops (see `LINGER`).
async fn write_lines(
    path: PathBuf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    closed: CancellationToken,
) {
    let mut file = match RotatingFile::open(path.clone(), ROTATE_BYTES, KEEP_ROTATED).await {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open replica log; its output is discarded");
            None
        }
    };
    let mut gone_at = None;
    loop {
        let next = match gone_at {
            None => tokio::select! {
                line = queue.recv() => line,
                () = closed.cancelled() => {
                    gone_at = Some(Instant::now());
                    continue;
                }
            },
            Some(at) => {
                let until = (Instant::now() + LINGER).min(at + LINGER_MAX);
                timeout_at(until, queue.recv()).await.unwrap_or(None)
            }
        };
        let Some(first) = next else { break };
        let mut batch = Vec::with_capacity(first.len());
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            batch.extend_from_slice(
                format!("[lull] {lost} bytes of output dropped: the disk did not keep up\n")
                    .as_bytes(),
            );
        }
        batch.extend_from_slice(&first);
        while batch.len() < BATCH_BYTES {
            match queue.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Some(f) = file.as_mut()
            && let Err(e) = f.write(&batch).await
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write replica log; its output is discarded");
            file = None;
        }
    }
}

/// An append-only file that moves itself to `.1` (and `.1` to `.2`, ...) when full.
pub(crate) struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotate_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    /// Opens `path` for appending, creating it and its directory.
    pub async fn open(path: PathBuf, rotate_bytes: u64, keep: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).await?;
        }
        let file = Self::append(&path).await?;
        let size = file.metadata().await?.len();
        Ok(Self {
            path,
            file,
            size,
            rotate_bytes,
            keep,
        })
    }

    async fn append(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
    }

    /// Appends `data`, rotating first when it would not fit.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.rotate_bytes {
            self.rotate().await?;
        }
        self.file.write_all(data).await?;
        // Readers (`lull logs`) see a line as soon as it is written.
        self.file.flush().await?;
        self.size += data.len() as u64;
        Ok(())
    }

    async fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..self.keep).rev() {
            match fs::rename(numbered(n), numbered(n + 1)).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep == 0 {
            fs::remove_file(&self.path).await?;
        } else {
            fs::rename(&self.path, numbered(1)).await?;
        }
        self.file = Self::append(&self.path).await?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_rotate_keeping_three_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-1.log");
        let mut file = RotatingFile::open(path.clone(), 100, 3)
            .await
            .expect("opens");
        for i in 0..10 {
            file.write(format!("{i:0>49}\n").as_bytes())
                .await
                .expect("writes");
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("exists");
        assert_eq!(read("app-1.log").lines().count(), 2);
        assert!(read("app-1.log").starts_with("0000000000000000000000000000000000000000000000008"));
        assert!(read("app-1.log.1").ends_with("7\n"));
        assert!(read("app-1.log.3").ends_with("3\n"));
        assert!(!dir.path().join("app-1.log.4").exists());
    }

    #[tokio::test]
    async fn show_prints_every_replica_oldest_rotation_first() {
        let state = tempfile::tempdir().expect("tempdir");
        let dir = deployment_dir(state.path(), "app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("app-10.log"), "ten\n").expect("write");
        std::fs::write(dir.join("app-2.log"), "new\nunfinished").expect("write");
        std::fs::write(dir.join("app-2.log.1"), "middle\n").expect("write");
        std::fs::write(dir.join("app-2.log.2"), "old\n").expect("write");
        let mut out = Vec::new();
        show(state.path(), "app", false, &mut out)
            .await
            .expect("shows");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "app-2 | old\napp-2 | middle\napp-2 | new\napp-2 | unfinished\napp-10 | ten\n"
        );
        let missing = show(state.path(), "other", false, Vec::new()).await;
        assert!(matches!(missing, Err(Error::NoLogs { .. })));
        let traversal = show(state.path(), "../etc", false, Vec::new()).await;
        assert!(matches!(traversal, Err(Error::InvalidName(_))));
    }

    #[tokio::test]
    async fn follow_notices_new_lines_rotations_and_replicas() {
        let state = tempfile::tempdir().expect("tempdir");
        let dir = deployment_dir(state.path(), "app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("app-1.log"), "first\n").expect("write");
        let (writer, mut reader) = tokio::io::duplex(64 * 1024);
        let state_dir = state.path().to_path_buf();
        let follower = tokio::spawn(async move { show(&state_dir, "app", true, writer).await });
        let mut seen = String::new();
        let mut expect = async |want: &str| {
            let until = tokio::time::Instant::now() + Duration::from_secs(30);
            while !seen.contains(want) {
                let mut buf = [0; 4096];
                let n = tokio::time::timeout_at(until, reader.read(&mut buf))
                    .await
                    .expect("output in time")
                    .expect("reads");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        expect("app-1 | first\n").await;
        let mut log = RotatingFile::open(dir.join("app-1.log"), 10, 3)
            .await
            .expect("opens");
        log.write(b"second\n").await.expect("writes");
        expect("app-1 | second\n").await;
        std::fs::write(dir.join("app-2.log"), "other\n").expect("write");
        expect("app-2 | other\n").await;
        follower.abort();
    }

    #[tokio::test]
    async fn long_lines_are_split_and_output_without_newline_is_kept() {
        let (lines, mut queue) = mpsc::channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nlast");
        read_lines(&input[..], lines, dropped.clone()).await;
        let mut got = Vec::new();
        while let Ok(line) = queue.try_recv() {
            got.push(line.len());
        }
        assert_eq!(got, [MAX_LINE, 11, 5]);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }
}
