//! `Server`: one endpoint = one listening UNIX socket, one client at a time.
//!
//! `serve()` runs the accept loop in the calling thread; each accepted connection is served
//! in that same thread (it is the connection's reader/request thread) until the client goes
//! away, then the next client is accepted. `spawn()` does the same on a new thread and returns
//! a handle that can stop it. Many endpoints = many servers, one thread each.

mod connection;
mod handlers;
mod options;
mod state;

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::channel::Channel;
use crate::device::Device;

pub use options::ServerOptions;
use state::Connection;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("socket path {path:?} is {len} bytes, longer than the {max} a UNIX socket address holds")]
    PathTooLong { path: PathBuf, len: usize, max: usize },
    #[error("removing stale socket {path:?}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("binding {path:?}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("accepting on {path:?}: {source}")]
    Accept { path: PathBuf, source: io::Error },
    #[error("spawning the server thread: {0}")]
    Spawn(io::Error),
}

/// Longest path `sun_path` holds (108 bytes including the terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// A vfio-user server for one device endpoint.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    device: Arc<dyn Device>,
    opts: ServerOptions,
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<Arc<Channel>>>>,
}

impl Server {
    /// Binds `path` (removing a stale socket file first) for `device`.
    pub fn new(path: impl AsRef<Path>, device: Arc<dyn Device>) -> Result<Server, ServerError> {
        Server::with_options(path, device, ServerOptions::default())
    }

    pub fn with_options(
        path: impl AsRef<Path>,
        device: Arc<dyn Device>,
        opts: ServerOptions,
    ) -> Result<Server, ServerError> {
        let path = path.as_ref().to_path_buf();
        let len = path.as_os_str().len();
        if len > SUN_PATH_MAX {
            return Err(ServerError::PathTooLong {
                path,
                len,
                max: SUN_PATH_MAX,
            });
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(ServerError::RemoveStale {
                        path,
                        source: io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"),
                    });
                }
                std::fs::remove_file(&path).map_err(|source| ServerError::RemoveStale {
                    path: path.clone(),
                    source,
                })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ServerError::RemoveStale { path, source }),
        }
        let listener = UnixListener::bind(&path).map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;
        Ok(Server {
            listener,
            path,
            device,
            opts,
            stop: Arc::new(AtomicBool::new(false)),
            current: Arc::new(Mutex::new(None)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts and serves clients one after another, forever (or until stopped through a
    /// [`ServerHandle`]).
    pub fn serve(self) -> Result<(), ServerError> {
        loop {
            let (sock, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    if self.stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    return Err(ServerError::Accept {
                        path: self.path.clone(),
                        source,
                    });
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.serve_one(sock);
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
    }

    fn serve_one(&self, sock: UnixStream) {
        let chan = Arc::new(Channel::new(sock));
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&chan));
        tracing::info!(path = ?self.path, "client connected");
        let reason = Connection::new(Arc::clone(&chan), Arc::clone(&self.device), self.opts).run();
        tracing::info!(path = ?self.path, "client gone: {reason}");
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs [`Server::serve`] on a new thread.
    pub fn spawn(self) -> Result<ServerHandle, ServerError> {
        let stop = Arc::clone(&self.stop);
        let current = Arc::clone(&self.current);
        let path = self.path.clone();
        let name = format!(
            "vfio-user:{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || self.serve())
            .map_err(ServerError::Spawn)?;
        Ok(ServerHandle {
            stop,
            current,
            path,
            thread: Some(thread),
        })
    }
}

/// A server running on its own thread. Dropping the handle stops it.
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<Arc<Channel>>>>,
    path: PathBuf,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl ServerHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Disconnects the current client (the server then accepts the next one).
    pub fn kick_client(&self) {
        if let Some(c) = self.current.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            c.shutdown();
        }
    }

    /// Stops accepting, disconnects the current client, and waits for the thread.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), ServerError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.stop.store(true, Ordering::SeqCst);
        self.kick_client();
        // Wake a blocking accept().
        let _ = UnixStream::connect(&self.path);
        let res = thread.join().unwrap_or(Ok(()));
        let _ = std::fs::remove_file(&self.path);
        res
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
