//! The ACK filter (spec 5.2): on a slow upstream, a download's stream of TCP ACKs can fill the
//! queue. A newer cumulative ACK makes older ones in the same queue redundant: the sender
//! learns nothing from them that the newer one does not tell. Removing them frees upstream
//! capacity without slowing the download.
//!
//! The filter is careful rather than clever: it only removes an ACK whose every piece of
//! information the new one carries (the cumulative ACK, SACK blocks, timestamps, ECN echo),
//! and keeps anything with data, with SYN, FIN, RST, URG or PSH, with options it does not
//! understand, with malformed options, or with a D-SACK (which reports a spurious
//! retransmission and must reach the sender). Duplicate ACKs (the same ACK, the same SACK) are
//! kept: they drive fast retransmit.

use crate::packet::{NetworkKind, PacketStamp};

/// IP protocol number of TCP.
const PROTOCOL_TCP: u8 = 6;

/// TCP flag bits in byte 13 of the header.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;

/// TCP option kinds (RFC 9293, RFC 2018, RFC 7323, RFC 2385).
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMP: u8 = 8;
const OPT_MD5: u8 = 19;
/// Length of the timestamp option, and of the MD5 signature option.
const TIMESTAMP_LEN: usize = 10;
const MD5_LEN: usize = 18;
/// A SACK option carries 1 to 4 blocks of 8 bytes after its 2-byte header.
const MAX_SACK_BLOCKS: usize = 4;

/// What the filter reads of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpAck {
    /// Addresses (IPv4 in the first 4 bytes) and IP version: the connection's identity.
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    /// Cumulative acknowledgement number.
    ack: u32,
    /// Flag byte, and the 4 reserved bits.
    flags: u8,
    reserved: u8,
    /// Payload follows the header.
    has_payload: bool,
    /// Every option is one the filter understands (NOP, EOL, MD5, SACK, timestamps).
    options_understood: bool,
    /// Some option is malformed (a length of 0 or 1, or running past the header, or a SACK
    /// or timestamp of the wrong length): nothing read from the options can be trusted.
    options_malformed: bool,
    /// Timestamp option (TSval, TSecr).
    timestamp: Option<(u32, u32)>,
    /// SACK blocks as (start, end).
    sack: [(u32, u32); MAX_SACK_BLOCKS],
    sack_blocks: usize,
}

/// `a` is after `b` in sequence space (RFC 1982 arithmetic).
#[inline]
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl TcpAck {
    /// Reads the TCP segment of a queued frame; `None` when it is not TCP or is malformed.
    pub fn parse(frame: &[u8], stamp: &PacketStamp) -> Option<TcpAck> {
        let l3 = usize::from(stamp.l3_offset);
        let l4 = usize::from(stamp.l4_offset);
        if l4 == 0 || stamp.protocol != PROTOCOL_TCP {
            return None;
        }
        let (v6, ip_end, src, dst) = match stamp.network {
            NetworkKind::Ipv4 => {
                let ip = frame.get(l3..l3 + 20)?;
                let mut src = [0; 16];
                let mut dst = [0; 16];
                src[..4].copy_from_slice(&ip[12..16]);
                dst[..4].copy_from_slice(&ip[16..20]);
                (false, l3 + usize::from(be16(ip, 2)), src, dst)
            }
            NetworkKind::Ipv6 => {
                let ip = frame.get(l3..l3 + 40)?;
                let mut src = [0; 16];
                let mut dst = [0; 16];
                src.copy_from_slice(&ip[8..24]);
                dst.copy_from_slice(&ip[24..40]);
                (true, l3 + 40 + usize::from(be16(ip, 4)), src, dst)
            }
            _ => return None,
        };
        let segment = frame.get(l4..ip_end.min(frame.len()))?;
        if segment.len() < 20 {
            return None;
        }
        let header_len = usize::from(segment[12] >> 4) * 4;
        if header_len < 20 || header_len > segment.len() {
            return None;
        }
        let mut ack = TcpAck {
            v6,
            src,
            dst,
            src_port: be16(segment, 0),
            dst_port: be16(segment, 2),
            ack: be32(segment, 8),
            flags: segment[13],
            reserved: segment[12] & 0x0f,
            has_payload: segment.len() > header_len,
            options_understood: true,
            options_malformed: false,
            timestamp: None,
            sack: [(0, 0); MAX_SACK_BLOCKS],
            sack_blocks: 0,
        };
        let mut options = &segment[20..header_len];
        while let Some(&kind) = options.first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => {
                    options = &options[1..];
                    continue;
                }
                _ => {}
            }
            let Some(&len) = options.get(1) else {
                ack.options_malformed = true;
                break;
            };
            let len = usize::from(len);
            if len < 2 || len > options.len() {
                ack.options_malformed = true;
                break;
            }
            let body = &options[2..len];
            match kind {
                OPT_TIMESTAMP if len == TIMESTAMP_LEN => {
                    ack.timestamp = Some((be32(body, 0), be32(body, 4)));
                }
                OPT_SACK
                    if (len - 2) % 8 == 0 && (1..=MAX_SACK_BLOCKS).contains(&((len - 2) / 8)) =>
                {
                    for (i, block) in body.chunks_exact(8).enumerate() {
                        ack.sack[i] = (be32(block, 0), be32(block, 4));
                    }
                    ack.sack_blocks = (len - 2) / 8;
                }
                OPT_MD5 if len == MD5_LEN => {}
                OPT_TIMESTAMP | OPT_SACK | OPT_MD5 => ack.options_malformed = true,
                _ => ack.options_understood = false,
            }
            options = &options[len..];
        }
        Some(ack)
    }

    /// Whether this segment may trigger filtering: an ACK without SYN (data allowed), whose
    /// options are well formed (its SACK blocks and timestamps are what candidates are judged
    /// against; options it does not know are fine, they are not compared).
    pub fn is_trigger(&self) -> bool {
        self.flags & ACK != 0 && self.flags & SYN == 0 && !self.options_malformed
    }

    fn same_connection(&self, other: &TcpAck) -> bool {
        self.v6 == other.v6
            && self.src == other.src
            && self.dst == other.dst
            && self.src_port == other.src_port
            && self.dst_port == other.dst_port
    }

    /// A D-SACK (RFC 2883 section 4): the first block starts below the cumulative ACK, or
    /// lies inside the second block.
    fn has_dsack(&self) -> bool {
        if self.sack_blocks == 0 {
            return false;
        }
        let (s0, e0) = self.sack[0];
        if after(self.ack, s0) {
            return true;
        }
        self.sack_blocks > 1 && {
            let (s1, e1) = self.sack[1];
            !after(s1, s0) && !after(e0, e1)
        }
    }

    /// How `newer`'s SACK information compares with ours: `None` if it misses some of ours,
    /// `Some(0)` if it is the same, `Some(1)` if it covers ours and more.
    fn sack_covered_by(&self, newer: &TcpAck) -> Option<u8> {
        if self.sack_blocks == 0 {
            return Some(u8::from(newer.sack_blocks > 0));
        }
        if newer.sack_blocks == 0 {
            return None;
        }
        let mut ours = 0u64;
        for &(s, e) in &self.sack[..self.sack_blocks] {
            let covered = newer.sack[..newer.sack_blocks]
                .iter()
                .any(|&(ns, ne)| !after(ns, s) && !after(e, ne));
            if !covered {
                return None;
            }
            ours += u64::from(e.wrapping_sub(s));
        }
        let theirs: u64 = newer.sack[..newer.sack_blocks]
            .iter()
            .map(|&(s, e)| u64::from(e.wrapping_sub(s)))
            .sum();
        Some(u8::from(theirs > ours))
    }

    /// True when `trigger`, queued after us, makes us redundant.
    pub fn made_redundant_by(&self, trigger: &TcpAck) -> bool {
        if !self.same_connection(trigger)
            || self.has_payload
            || !self.options_understood
            || self.options_malformed
        {
            return false;
        }
        if self.flags & (URG | PSH | RST | SYN | FIN) != 0
            || self.flags & ACK == 0
            || self.reserved != 0
        {
            return false;
        }
        if self.flags & (ECE | CWR) != trigger.flags & (ECE | CWR) {
            return false;
        }
        if after(self.ack, trigger.ack) {
            return false;
        }
        if let Some((val, ecr)) = self.timestamp {
            match trigger.timestamp {
                Some((tval, tecr)) if !after(val, tval) && !after(ecr, tecr) => {}
                _ => return false,
            }
        }
        if self.has_dsack() {
            return false;
        }
        match self.sack_covered_by(trigger) {
            None => false,
            // Same SACK information: redundant only if the trigger acknowledges more.
            Some(0) => after(trigger.ack, self.ack),
            Some(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{ipv4_frame, FrameSpec};

    /// An IPv4 TCP segment with `flags`, ack number, options and payload.
    fn segment(flags: u8, ack: u32, options: &[u8], payload: usize) -> (Vec<u8>, PacketStamp) {
        let opt_len = options.len().div_ceil(4) * 4;
        let len = 14 + 20 + 20 + opt_len + payload;
        let spec = FrameSpec {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            protocol: 6,
            src_port: 40000,
            dst_port: 443,
            dscp: 0,
            ecn: 0,
            len,
        };
        let (mut p, _) = ipv4_frame(&spec, 0, 0);
        let b = &mut p.bytes;
        b[42..46].copy_from_slice(&ack.to_be_bytes());
        b[46] = ((20 + opt_len) as u8 / 4) << 4;
        b[47] = flags;
        b[54..54 + options.len()].copy_from_slice(options);
        let stamp = PacketStamp {
            l3_offset: 14,
            network: NetworkKind::Ipv4,
            l4_offset: 34,
            protocol: PROTOCOL_TCP,
            ..PacketStamp::default()
        };
        (p.bytes, stamp)
    }

    fn ack(flags: u8, ack: u32, options: &[u8], payload: usize) -> TcpAck {
        let (b, s) = segment(flags, ack, options, payload);
        TcpAck::parse(&b, &s).expect("valid TCP")
    }

    fn ts(val: u32, ecr: u32) -> Vec<u8> {
        let mut o = vec![OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        o
    }

    fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
        let mut o = vec![OPT_NOP, OPT_NOP, OPT_SACK, (2 + 8 * blocks.len()) as u8];
        for (s, e) in blocks {
            o.extend_from_slice(&s.to_be_bytes());
            o.extend_from_slice(&e.to_be_bytes());
        }
        o
    }

    #[test]
    fn an_older_cumulative_ack_is_redundant() {
        assert!(ack(ACK, 1000, &[], 0).made_redundant_by(&ack(ACK, 2000, &[], 0)));
        // Across sequence wrap-around.
        assert!(ack(ACK, u32::MAX - 10, &[], 0).made_redundant_by(&ack(ACK, 5, &[], 0)));
        // A newer one is not.
        assert!(!ack(ACK, 3000, &[], 0).made_redundant_by(&ack(ACK, 2000, &[], 0)));
    }

    #[test]
    fn duplicate_acks_are_kept_for_fast_retransmit() {
        assert!(!ack(ACK, 1000, &[], 0).made_redundant_by(&ack(ACK, 1000, &[], 0)));
    }

    #[test]
    fn syn_fin_rst_psh_urg_and_data_are_kept() {
        let trigger = ack(ACK, 9000, &[], 0);
        for flags in [SYN | ACK, FIN | ACK, RST | ACK, PSH | ACK, URG | ACK] {
            assert!(
                !ack(flags, 1000, &[], 0).made_redundant_by(&trigger),
                "flags {flags:#x}"
            );
        }
        assert!(
            !ack(ACK, 1000, &[], 100).made_redundant_by(&trigger),
            "data"
        );
        // A trigger may carry data; a SYN may not trigger.
        assert!(ack(ACK, 1000, &[], 0).made_redundant_by(&ack(ACK | PSH, 2000, &[], 50)));
        assert!(!ack(SYN | ACK, 2000, &[], 0).is_trigger());
    }

    #[test]
    fn ecn_echo_state_must_match() {
        assert!(!ack(ACK | ECE, 1000, &[], 0).made_redundant_by(&ack(ACK, 2000, &[], 0)));
        assert!(ack(ACK | ECE, 1000, &[], 0).made_redundant_by(&ack(ACK | ECE, 2000, &[], 0)));
    }

    #[test]
    fn timestamps_must_not_be_newer_than_the_triggers() {
        assert!(ack(ACK, 1000, &ts(5, 7), 0).made_redundant_by(&ack(ACK, 2000, &ts(6, 7), 0)));
        assert!(!ack(ACK, 1000, &ts(9, 7), 0).made_redundant_by(&ack(ACK, 2000, &ts(6, 7), 0)));
        assert!(!ack(ACK, 1000, &ts(5, 7), 0).made_redundant_by(&ack(ACK, 2000, &[], 0)));
    }

    #[test]
    fn sack_information_must_be_covered_and_extended() {
        let older = ack(ACK, 1000, &sack(&[(3000, 4000)]), 0);
        // Same ack, SACK extended: redundant.
        assert!(older.made_redundant_by(&ack(ACK, 1000, &sack(&[(3000, 5000)]), 0)));
        // Same ack, same SACK: a duplicate, kept.
        assert!(!older.made_redundant_by(&ack(ACK, 1000, &sack(&[(3000, 4000)]), 0)));
        // Ack moved past the hole: redundant even though the new SACK differs? Only if it
        // still covers the old block.
        assert!(!older.made_redundant_by(&ack(ACK, 2000, &sack(&[(6000, 7000)]), 0)));
        assert!(older.made_redundant_by(&ack(ACK, 2000, &sack(&[(3000, 4000)]), 0)));
        // A SACK candidate against a trigger without SACK is kept.
        assert!(!older.made_redundant_by(&ack(ACK, 5000, &[], 0)));
        // A D-SACK (first block below the cumulative ack) is kept.
        let dsack = ack(ACK, 1000, &sack(&[(500, 600)]), 0);
        assert!(!dsack.made_redundant_by(&ack(ACK, 2000, &sack(&[(0, 5000)]), 0)));
    }

    #[test]
    fn unknown_or_malformed_options_keep_the_packet() {
        // Window scale (kind 3) is not expected on a pure ACK: keep.
        assert!(!ack(ACK, 1000, &[3, 3, 7, OPT_NOP], 0).made_redundant_by(&ack(ACK, 2000, &[], 0)));
        // SACK with a length that is not 2 + 8n: keep.
        assert!(
            !ack(ACK, 1000, &[OPT_NOP, OPT_NOP, OPT_SACK, 7, 0, 0, 0, 0], 0)
                .made_redundant_by(&ack(ACK, 2000, &[], 0))
        );
        // An option running past the header: keep.
        assert!(!ack(ACK, 1000, &[OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 40], 0)
            .made_redundant_by(&ack(ACK, 2000, &[], 0)));
    }

    #[test]
    fn a_dsack_is_kept_wherever_it_sits() {
        let trigger = ack(ACK, 9000, &sack(&[(0, 9500)]), 0);
        // RFC 2883: a first block starting below the cumulative ack is a D-SACK, even when it
        // ends above it...
        let straddling = ack(ACK, 1000, &sack(&[(900, 1100)]), 0);
        assert!(!straddling.made_redundant_by(&trigger));
        // ...and so is a first block inside the second.
        let inside = ack(ACK, 1000, &sack(&[(3000, 3500), (2000, 4000)]), 0);
        assert!(!inside.made_redundant_by(&trigger));
        // Two ordinary blocks are not a D-SACK: covered and extended, the candidate goes.
        let plain = ack(ACK, 1000, &sack(&[(3000, 3500), (5000, 6000)]), 0);
        assert!(plain.made_redundant_by(&ack(ACK, 1000, &sack(&[(3000, 6000)]), 0)));
    }

    #[test]
    fn a_trigger_with_malformed_options_filters_nothing() {
        let candidate = ack(ACK, 1000, &[], 0);
        // A SACK option whose length is not 2 + 8n: the trigger's SACK cannot be read.
        let malformed = ack(ACK, 2000, &[OPT_NOP, OPT_NOP, OPT_SACK, 7, 0, 0, 0, 0], 0);
        assert!(!malformed.is_trigger());
        // An option the filter does not know (window scale) does not stop a trigger: only the
        // candidates must be fully understood.
        let unknown = ack(ACK, 2000, &[3, 3, 7, OPT_NOP], 0);
        assert!(unknown.is_trigger());
        assert!(candidate.made_redundant_by(&unknown));
    }

    #[test]
    fn only_tcp_is_parsed() {
        let (b, mut s) = segment(ACK, 1000, &[], 0);
        s.protocol = 17;
        assert_eq!(TcpAck::parse(&b, &s), None);
        s.protocol = PROTOCOL_TCP;
        s.l4_offset = 0;
        assert_eq!(TcpAck::parse(&b, &s), None, "no transport header found");
        // A header length pointing past the segment.
        let (mut b, s) = segment(ACK, 1000, &[], 0);
        b[46] = 15 << 4;
        assert_eq!(TcpAck::parse(&b, &s), None);
    }

    #[test]
    fn another_connection_is_never_touched() {
        let (mut b, s) = segment(ACK, 1000, &[], 0);
        b[34] = 0x11; // other source port
        let other = TcpAck::parse(&b, &s).unwrap();
        assert!(!other.made_redundant_by(&ack(ACK, 2000, &[], 0)));
    }
}
