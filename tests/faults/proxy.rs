//! A TCP forwarder on 127.0.0.1 in front of the broker. Stopping it closes
//! the port and cuts every connection, which is what clients see of a
//! stopped broker; starting it again on the same port brings the broker
//! back with its topics (tansu keeps them in memory, so the broker process
//! itself cannot be restarted without losing them).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    /// The broker's own port.
    upstream: u16,
    /// Set to stop accepting and forwarding.
    stop: Arc<AtomicBool>,
    /// Every connection, both sides, to cut them on stop.
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// The accepting thread while up.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    pub fn start(port: u16, upstream: u16) -> Proxy {
        let p = Proxy {
            port,
            upstream,
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accept: Mutex::new(None),
        };
        p.up();
        p
    }

    /// Opens the port (again).
    pub fn up(&self) {
        let mut accept = self.accept.lock().unwrap();
        assert!(accept.is_none(), "already up");
        self.stop.store(false, Ordering::SeqCst);
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy port");
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop, conns, upstream) = (Arc::clone(&self.stop), Arc::clone(&self.conns), self.upstream);
        *accept = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                        let mut all = conns.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    /// Closes the port and cuts every connection.
    pub fn down(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.lock().unwrap().take() {
            let _ = h.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
