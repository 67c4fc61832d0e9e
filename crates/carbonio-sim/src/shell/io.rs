//! Where a simulated process reads and writes: stdin sources and stdout/stderr sinks
//! (an SSH channel, an in-memory buffer, a virtual file, /dev/null).

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::node::Node;

/// Which output stream of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Something that delivers output to the outside, in write order (an SSH channel).
pub trait OutputPort: Send + Sync {
    /// Sends one chunk.
    fn send(&self, stream: Stream, data: Vec<u8>) -> BoxFuture<'_, ()>;
}

/// A writable file descriptor.
#[derive(Clone)]
pub enum Sink {
    /// `/dev/null`.
    Null,
    /// Captured in memory (pipes, `$(…)`, tests).
    Buffer(Arc<Mutex<Vec<u8>>>),
    /// Sent to the client.
    Port(Arc<dyn OutputPort>, Stream),
    /// Appended to a file of the node's virtual filesystem.
    File(Arc<Node>, String),
}

impl Sink {
    /// A new empty buffer sink and its storage.
    pub fn buffer() -> (Sink, Arc<Mutex<Vec<u8>>>) {
        let b = Arc::new(Mutex::new(Vec::new()));
        (Sink::Buffer(b.clone()), b)
    }

    /// Writes all of `data`.
    pub async fn write(&self, data: impl AsRef<[u8]>) {
        let data = data.as_ref();
        if data.is_empty() {
            return;
        }
        match self {
            Sink::Null => {}
            Sink::Buffer(b) => b.lock().expect("buffer poisoned").extend_from_slice(data),
            Sink::Port(p, s) => p.send(*s, data.to_vec()).await,
            Sink::File(node, path) => {
                node.state()
                    .files
                    .entry(path.clone())
                    .or_default()
                    .extend_from_slice(data);
            }
        }
    }

    /// Writes a string followed by a newline.
    pub async fn line(&self, s: impl AsRef<str>) {
        let mut v = s.as_ref().as_bytes().to_vec();
        v.push(b'\n');
        self.write(v).await;
    }
}

/// A readable file descriptor. Reading consumes it, as a real stdin would be.
#[derive(Clone)]
pub enum Source {
    /// `/dev/null` or nothing.
    Empty,
    /// A pipe or file content, consumed on first read.
    Bytes(Arc<Mutex<Option<Vec<u8>>>>),
    /// The SSH channel's data until the client's EOF.
    Channel(Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<u8>>>>),
    /// The real stdin of this process (`sim-exec`), read only if a program asks for it:
    /// a program that never reads must not swallow input meant for the next command.
    ProcessStdin(Arc<std::sync::atomic::AtomicBool>),
}

impl Source {
    /// A source over fixed bytes.
    pub fn bytes(b: Vec<u8>) -> Source {
        Source::Bytes(Arc::new(Mutex::new(Some(b))))
    }

    /// Reads to end of input (waits for the client's EOF on a channel).
    pub async fn read_all(&self) -> Vec<u8> {
        match self {
            Source::Empty => Vec::new(),
            Source::Bytes(b) => b.lock().expect("stdin poisoned").take().unwrap_or_default(),
            Source::Channel(rx) => {
                let mut rx = rx.lock().await;
                let mut out = Vec::new();
                while let Some(chunk) = rx.recv().await {
                    out.extend_from_slice(&chunk);
                }
                out
            }
            Source::ProcessStdin(consumed) => {
                if consumed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return Vec::new();
                }
                tokio::task::spawn_blocking(|| {
                    use std::io::Read;
                    let mut v = Vec::new();
                    // A read error is end of input, as for a closed pipe.
                    let _ = std::io::stdin().lock().read_to_end(&mut v);
                    v
                })
                .await
                .unwrap_or_default()
            }
        }
    }
}

/// The three standard descriptors of a process.
#[derive(Clone)]
pub struct Io {
    pub stdin: Source,
    pub stdout: Sink,
    pub stderr: Sink,
}

impl Io {
    /// Empty stdin, both outputs discarded.
    pub fn null() -> Io {
        Io {
            stdin: Source::Empty,
            stdout: Sink::Null,
            stderr: Sink::Null,
        }
    }
}
