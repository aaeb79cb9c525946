//! An axum router served on 127.0.0.1 from its own thread and runtime, so
//! the tests using it may block (or run their own runtime); stopped and
//! joined when dropped, which also cancels open connections and watches.

use std::net::SocketAddr;

pub(crate) struct Served {
    pub(crate) address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// `what` names the fake in thread names and panics.
    pub(crate) fn start(what: &str, router: axum::Router) -> Served {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("a local port can be bound");
        listener
            .set_nonblocking(true)
            .expect("the listener can be made non-blocking");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let name = what.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("{what}-{}", address.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("the {name}'s runtime can be built: {e}"));
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("the listener joins the runtime");
                    tokio::select! {
                        served = axum::serve(listener, router) => {
                            served.unwrap_or_else(|e| panic!("the {name} runs: {e}"));
                        }
                        _ = stopped => {}
                    }
                });
            })
            .unwrap_or_else(|e| panic!("the {what}'s thread can start: {e}"));
        Served {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server thread may already be gone; either way it stops.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
