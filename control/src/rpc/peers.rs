//! Cached gRPC channels to managers, all speaking with this node's current certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tonic::transport::Channel;

use super::pb;
use super::transport;
use crate::tls;

pub struct Peers {
    config: RwLock<Arc<rustls::ClientConfig>>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Arc<Peers> {
        Arc::new(Peers { config: RwLock::new(config), channels: Mutex::new(HashMap::new()) })
    }

    /// Switches to a new certificate (after promotion, demotion or renewal); existing
    /// connections keep the old one until they are dropped, new calls use the new one.
    pub fn set_config(&self, config: Arc<rustls::ClientConfig>) {
        *self.config.write().expect("peers config lock") = config;
        self.channels.lock().expect("peers channel lock").clear();
    }

    /// A channel to the manager listening at `addr` (`ip:port`).
    pub fn channel(&self, addr: &str) -> anyhow::Result<Channel> {
        let mut channels = self.channels.lock().expect("peers channel lock");
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let config = self.config.read().expect("peers config lock").clone();
        let channel = transport::channel(addr, config, tls::MANAGER_SERVER_NAME)?;
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A channel to node `node_id`'s 2377 listener at `addr`, checking that the certificate
    /// there names that node (every node certificate carries its ID as a DNS name).
    pub fn node(&self, addr: &str, node_id: &str) -> anyhow::Result<Channel> {
        let key = format!("{node_id}@{addr}");
        let mut channels = self.channels.lock().expect("peers channel lock");
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let config = self.config.read().expect("peers config lock").clone();
        let channel = transport::channel(addr, config, node_id)?;
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// Forgets a channel whose connection failed so the next call dials again.
    pub fn forget(&self, addr: &str) {
        self.channels.lock().expect("peers channel lock").remove(addr);
    }

    pub fn raft(&self, addr: &str) -> anyhow::Result<pb::raft_client::RaftClient<Channel>> {
        Ok(pb::raft_client::RaftClient::new(self.channel(addr)?))
    }

    pub fn control(&self, addr: &str) -> anyhow::Result<pb::control_client::ControlClient<Channel>> {
        Ok(pb::control_client::ControlClient::new(self.channel(addr)?))
    }

    pub fn membership(&self, addr: &str) -> anyhow::Result<pb::raft_membership_client::RaftMembershipClient<Channel>> {
        Ok(pb::raft_membership_client::RaftMembershipClient::new(self.channel(addr)?))
    }

    pub fn dispatcher(&self, addr: &str) -> anyhow::Result<pb::dispatcher_client::DispatcherClient<Channel>> {
        Ok(pb::dispatcher_client::DispatcherClient::new(self.channel(addr)?))
    }

    pub fn node_ca(&self, addr: &str) -> anyhow::Result<pb::node_ca_client::NodeCaClient<Channel>> {
        Ok(pb::node_ca_client::NodeCaClient::new(self.channel(addr)?))
    }
}
