//! A plain HTTP/1.1 file server on 127.0.0.1 whose answers tests change
//! while it runs: add or replace a file, answer a path with a status, or
//! accept connections and never answer (to prove client timeouts).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Default)]
struct Routes {
    files: Mutex<HashMap<String, (u16, Vec<u8>)>>,
    requests: Mutex<Vec<String>>,
    silent: AtomicBool,
}

/// Serves until the process ends; clones share the same routes.
#[derive(Clone)]
pub struct StaticHttp {
    url: String,
    routes: Arc<Routes>,
}

impl StaticHttp {
    pub fn start() -> StaticHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes = Arc::new(Routes::default());
        let shared = routes.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = shared.clone();
                thread::spawn(move || answer(&routes, stream));
            }
        });
        StaticHttp { url, routes }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serve `body` with 200 at `path` (which starts with `/`).
    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.respond(path, 200, body);
    }

    pub fn respond(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        self.routes
            .files
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, body.into()));
    }

    pub fn remove(&self, path: &str) {
        self.routes.files.lock().unwrap().remove(path);
    }

    /// Accept connections but never answer them.
    pub fn go_silent(&self) {
        self.routes.silent.store(true, Ordering::SeqCst);
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.routes.requests.lock().unwrap().clone()
    }
}

fn answer(routes: &Routes, mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
    }
    routes.requests.lock().unwrap().push(path.clone());
    if routes.silent.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_secs(3600));
        return;
    }
    let (status, body) = routes
        .files
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or((404, b"not found".to_vec()));
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(&body);
}
