//! Ethernet ports and their queues.

use super::{DpdkError, Eal, MbufBuffer, Mempool};
use std::ffi::{CStr, CString};
use std::marker::PhantomData;

/// How to set up a port: one RX and one TX queue per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// RX queues (one per worker).
    pub rx_queues: u16,
    /// TX queues (one per worker).
    pub tx_queues: u16,
    /// Descriptors per RX queue.
    pub rx_descriptors: u16,
    /// Descriptors per TX queue.
    pub tx_descriptors: u16,
    /// Largest IP packet (L3 MTU) the port must carry.
    pub mtu: u16,
    /// RSS hash types to request when there is more than one RX queue (masked by what the
    /// device supports).
    pub rss_hash: u64,
}

/// Counters DPDK keeps for a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames the port dropped because the RX queues were full (the workers were too slow).
    pub rx_missed: u64,
    /// Erroneous frames received.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// RX buffer allocation failures (the mempool was empty).
    pub rx_no_mbuf: u64,
}

/// A configured and started Ethernet port. Stopped and closed on drop, which returns the
/// mbufs held in its descriptor rings to their pool.
#[derive(Debug)]
pub struct Port {
    id: u16,
    device: String,
    config: PortConfig,
    queues_taken: std::cell::Cell<bool>,
    started: bool,
    /// The RSS hash types the driver was given (what it offers of those asked for).
    rss_hash: u64,
}

impl Port {
    /// Finds the port DPDK created for `device` (a vdev name such as `net_af_packet0`, or a PCI
    /// address such as `0000:03:00.0`), configures its queues, and starts it.
    pub fn start(
        _eal: &Eal,
        device: &str,
        config: &PortConfig,
        pool: Mempool,
    ) -> Result<Port, DpdkError> {
        let context = |what: &str| format!("{what} port {device}");
        let cname = CString::new(device).map_err(|_| DpdkError {
            context: context("naming"),
            call: "rte_eth_dev_get_port_by_name",
            errno: 22,
        })?;
        let mut id = 0u16;
        // SAFETY: EAL initialised; cname is valid for the call; id is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                "rte_eth_dev_get_port_by_name",
                ret,
                format!(
                    "finding port {device} (DPDK has no such device: for a PCI NIC check it is \
                     bound to vfio-pci with dpdk-devbind.py --status; for a vdev check its \
                     driver name)"
                ),
            ));
        }

        // SAFETY: rte_eth_dev_info is plain data; zeroed is a valid initial value.
        let mut info: dpdk_sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: id is a valid port; info is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                "rte_eth_dev_info_get",
                ret,
                context("querying"),
            ));
        }
        if config.rx_queues > info.max_rx_queues || config.tx_queues > info.max_tx_queues {
            return Err(DpdkError {
                context: format!(
                    "port {device} offers {} RX and {} TX queues, but {} workers need {} of \
                     each (for net_af_packet add qpairs={} to the device string)",
                    info.max_rx_queues,
                    info.max_tx_queues,
                    config.rx_queues,
                    config.rx_queues,
                    config.rx_queues
                ),
                call: "rte_eth_dev_configure",
                errno: 22,
            });
        }

        // SAFETY: rte_eth_conf is plain data; zeroed means "driver defaults".
        let mut conf: dpdk_sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        let mut rss_hash = 0;
        if config.rx_queues > 1 {
            // The one-side-only bits modify the hash types; a driver that lists them in its
            // offloads can hash one address alone. Without them it hashes both: still correct,
            // the handoff rings carry what lands on another worker.
            let modifiers = dpdk_sys::RTE_ETH_RSS_L3_SRC_ONLY | dpdk_sys::RTE_ETH_RSS_L3_DST_ONLY;
            let types = config.rss_hash & !modifiers & info.flow_type_rss_offloads;
            if types != 0 {
                rss_hash = types | (config.rss_hash & modifiers & info.flow_type_rss_offloads);
                conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = rss_hash;
            }
        }
        let mtu = u32::from(config.mtu);
        // Virtual devices often report no MTU range at all (0..0); only enforce a real one.
        if info.max_mtu != 0 && (mtu < u32::from(info.min_mtu) || mtu > u32::from(info.max_mtu)) {
            return Err(DpdkError {
                context: format!(
                    "port {device} accepts an MTU from {} to {}, the configuration asks for {}",
                    info.min_mtu, info.max_mtu, config.mtu
                ),
                call: "rte_eth_dev_configure",
                errno: 22,
            });
        }
        if info.max_mtu != 0 {
            conf.rxmode.mtu = mtu;
        }
        // SAFETY: id is valid and stopped; conf is initialised.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_configure(id, config.rx_queues, config.tx_queues, &conf)
        };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                "rte_eth_dev_configure",
                ret,
                context("configuring"),
            ));
        }
        // SAFETY: id is a valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..config.rx_queues {
            // SAFETY: the port is configured for rx_queues queues; a null rx_conf asks for the
            // driver's defaults; the pool outlives the port.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    config.rx_descriptors,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if ret != 0 {
                return Err(DpdkError::from_ret(
                    "rte_eth_rx_queue_setup",
                    ret,
                    format!("setting up RX queue {q} of port {device}"),
                ));
            }
        }
        for q in 0..config.tx_queues {
            // SAFETY: as above, with the driver's default TX configuration.
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(
                    id,
                    q,
                    config.tx_descriptors,
                    socket,
                    std::ptr::null(),
                )
            };
            if ret != 0 {
                return Err(DpdkError::from_ret(
                    "rte_eth_tx_queue_setup",
                    ret,
                    format!("setting up TX queue {q} of port {device}"),
                ));
            }
        }
        // A bump in the wire forwards frames addressed to anyone.
        // SAFETY: id is a valid, configured port. Some virtual devices do not implement
        // promiscuous mode (they receive everything anyway), so a failure is not fatal.
        unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        // SAFETY: id is configured with all its queues set up.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                "rte_eth_dev_start",
                ret,
                context("starting"),
            ));
        }
        Ok(Port {
            id,
            device: device.to_owned(),
            config: config.clone(),
            queues_taken: std::cell::Cell::new(false),
            started: true,
            rss_hash,
        })
    }

    /// How the port spreads frames over its RX queues.
    pub fn rss_spread(&self) -> super::RssSpread {
        super::RssSpread::of(self.config.rx_queues, self.rss_hash)
    }

    /// DPDK's port number.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device string the port was opened with.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The driver behind the port, e.g. `net_af_packet` or `net_ixgbe`.
    pub fn driver(&self) -> String {
        // SAFETY: as in `start`.
        let mut info: dpdk_sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: id is valid; info is a valid out-pointer.
        if unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) } != 0
            || info.driver_name.is_null()
        {
            return "unknown".into();
        }
        // SAFETY: driver_name points to a static NUL-terminated string of the driver.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    }

    /// The port's RX and TX queues, one pair per worker. Handed out once: each queue then has a
    /// single owner, which is what makes polling it without locks sound. The handles borrow the
    /// port, so it cannot be stopped while a worker still polls them.
    pub fn take_queues(&self) -> Option<(Vec<RxQueue<'_>>, Vec<TxQueue<'_>>)> {
        if self.queues_taken.replace(true) {
            return None;
        }
        let rx = (0..self.config.rx_queues)
            .map(|queue| RxQueue {
                port: self.id,
                queue,
                _port: PhantomData,
            })
            .collect();
        let tx = (0..self.config.tx_queues)
            .map(|queue| TxQueue {
                port: self.id,
                queue,
                _port: PhantomData,
            })
            .collect();
        Some((rx, tx))
    }

    /// DPDK's counters for the port.
    pub fn stats(&self) -> PortStats {
        // SAFETY: rte_eth_stats is plain data.
        let mut s: dpdk_sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: id is valid; s is a valid out-pointer. Reading stats while workers poll is
        // allowed by DPDK.
        if unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) } != 0 {
            return PortStats::default();
        }
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
        }
    }

    /// Stops the port. Its queues can no longer be borrowed, so no worker polls it.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        // SAFETY: &mut self proves no queue handle is alive.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                "rte_eth_dev_stop",
                ret,
                format!("stopping port {}", self.device),
            ));
        }
        Ok(())
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // Errors here have nowhere to go: the port is being abandoned either way.
        let _ = self.stop();
        // SAFETY: the port is stopped and no queue handle is alive (they borrow self); closing
        // frees the mbufs still held in its RX descriptors.
        unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
    }
}

/// One RX queue of a port, owned by one worker.
#[derive(Debug)]
pub struct RxQueue<'port> {
    port: u16,
    queue: u16,
    _port: PhantomData<&'port ()>,
}

impl RxQueue<'_> {
    /// Receives up to `max` frames (bounded by the buffer's spare room) into `buf`; returns how
    /// many arrived. Byte counts are the port's business (see [`Port::stats`]): counting them
    /// here would mean touching every mbuf, which a forwarding path otherwise never does.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, buf: &mut MbufBuffer<N>, max: usize) -> usize {
        let slots = buf.tail_slots();
        let want = slots.len().min(max) as u16;
        if want == 0 {
            return 0;
        }
        // SAFETY: we are this queue's only poller (unique handle); `slots` has room for `want`
        // pointers; the port is started while the handle lives.
        let n =
            unsafe { dpdk_sys::rte_eth_rx_burst(self.port, self.queue, slots.as_mut_ptr(), want) }
                as usize;
        // SAFETY: rte_eth_rx_burst stored n owned mbufs in the first n slots.
        unsafe { buf.filled(n) };
        n
    }

    /// The port this queue belongs to.
    pub fn port_id(&self) -> u16 {
        self.port
    }
}

/// One TX queue of a port, owned by one worker.
#[derive(Debug)]
pub struct TxQueue<'port> {
    port: u16,
    queue: u16,
    _port: PhantomData<&'port ()>,
}

impl TxQueue<'_> {
    /// Hands as many of `buf`'s frames (oldest first) to the NIC as it takes; the rest stay in
    /// `buf` for the next call. Returns how many were taken.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, buf: &mut MbufBuffer<N>) -> usize {
        let held = buf.held_slots();
        if held.is_empty() {
            return 0;
        }
        let n = held.len().min(u16::MAX as usize) as u16;
        // SAFETY: we are this queue's only user; `held` are owned, valid mbufs; the port is
        // started while the handle lives.
        let sent =
            unsafe { dpdk_sys::rte_eth_tx_burst(self.port, self.queue, held.as_mut_ptr(), n) }
                as usize;
        // SAFETY: rte_eth_tx_burst took ownership of the first `sent` mbufs.
        unsafe { buf.consumed(sent) };
        sent
    }

    /// The port this queue belongs to.
    pub fn port_id(&self) -> u16 {
        self.port
    }
}
