//! LAN discovery with mdns-sd: each node announces `_gatemesh._udp.local.` with TXT records
//! `event` (event id), `peer` (libp2p peer id) and `v` (protocol version), and browses for the
//! same service. Loopback interfaces are included (mdns-sd enables them), so several nodes on one
//! machine find each other. Announcements of another event are ignored.

use crate::MeshError;
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use std::net::IpAddr;

pub const SERVICE_TYPE: &str = "_gatemesh._udp.local.";
pub const DISCOVERY_VERSION: &str = "1";
/// Discovered peers buffered before the node takes them.
pub const DISCOVERED_QUEUE_MAX: usize = 256;

/// A peer of our event seen on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub peer_id: String,
    pub addrs: Vec<IpAddr>,
    pub port: u16,
}

pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("fullname", &self.fullname)
            .finish()
    }
}

impl Discovery {
    /// Announce this node (QUIC on `port`) and start browsing. Discovered peers of `event_id`
    /// other than ourselves are sent on the returned channel.
    pub fn start(
        event_id: &str,
        peer_id: &str,
        port: u16,
    ) -> Result<(Discovery, tokio::sync::mpsc::Receiver<Discovered>), MeshError> {
        let daemon = ServiceDaemon::new()?;
        // Instance names are limited to 63 bytes; the peer id's tail is unique enough and the
        // full id travels in TXT.
        let instance = format!("gm-{}", &peer_id[peer_id.len().saturating_sub(20)..]);
        let host = format!("{instance}.local.");
        let props = [
            ("event", event_id),
            ("peer", peer_id),
            ("v", DISCOVERY_VERSION),
        ];
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", port, &props[..])?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        let browse = daemon.browse(SERVICE_TYPE)?;
        let (tx, rx) = tokio::sync::mpsc::channel(DISCOVERED_QUEUE_MAX);
        let (event, me) = (event_id.to_string(), peer_id.to_string());
        std::thread::Builder::new()
            .name("gatemesh-mdns".into())
            .spawn(move || {
                while let Ok(ev) = browse.recv() {
                    let ServiceEvent::ServiceResolved(svc) = ev else {
                        continue;
                    };
                    if svc.get_property_val_str("event") != Some(event.as_str()) {
                        continue;
                    }
                    let Some(peer) = svc.get_property_val_str("peer") else {
                        continue;
                    };
                    if peer == me {
                        continue;
                    }
                    let addrs = svc.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
                    let found = Discovered {
                        peer_id: peer.to_string(),
                        addrs,
                        port: svc.get_port(),
                    };
                    // A full queue drops the announcement; the next one (mDNS repeats) gets in.
                    if tx.try_send(found).is_err() && tx.is_closed() {
                        return;
                    }
                }
            })
            .map_err(|e| MeshError::Libp2p(e.to_string()))?;
        Ok((Discovery { daemon, fullname }, rx))
    }

    /// Withdraw our announcement and stop the daemon.
    pub fn stop(self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}
