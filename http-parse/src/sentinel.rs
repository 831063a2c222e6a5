//! What Redis Sentinel answers, read without nginx: the master's address
//! (`SENTINEL get-master-addr-by-name`) and the `+switch-master` message of a
//! failover (`<name> <old ip> <old port> <new ip> <new port>`).

use std::net::{IpAddr, SocketAddr};

/// The address in a reply to `SENTINEL get-master-addr-by-name`: its two
/// words. `None` for a host name (`sentinel resolve-hostnames yes`) or a bad port.
pub fn master_addr(ip: &[u8], port: &[u8]) -> Option<SocketAddr> {
    let ip: IpAddr = core::str::from_utf8(ip).ok()?.parse().ok()?;
    let port: u16 = core::str::from_utf8(port).ok()?.parse().ok()?;
    (port != 0).then_some(SocketAddr::new(ip, port))
}

/// The new master's address in a `+switch-master` message, if it is about
/// the master `name`.
pub fn switch_master(message: &[u8], name: &str) -> Option<SocketAddr> {
    let mut words = message.split(|b| *b == b' ');
    if words.next()? != name.as_bytes() {
        return None;
    }
    let (_old_ip, _old_port, ip, port) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    master_addr(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            master_addr(b"127.0.0.1", b"6380"),
            Some("127.0.0.1:6380".parse().unwrap())
        );
        assert_eq!(master_addr(b"::1", b"6380"), Some("[::1]:6380".parse().unwrap()));
        assert_eq!(master_addr(b"redis.local", b"6380"), None);
        assert_eq!(master_addr(b"127.0.0.1", b"0"), None);
        assert_eq!(master_addr(b"127.0.0.1", b"70000"), None);
    }

    #[test]
    fn switches() {
        let m = b"mym 127.0.0.1 6379 127.0.0.1 6380";
        assert_eq!(switch_master(m, "mym"), Some("127.0.0.1:6380".parse().unwrap()));
        assert_eq!(switch_master(m, "other"), None);
        assert_eq!(switch_master(b"mym 127.0.0.1 6379 127.0.0.1", "mym"), None);
        assert_eq!(switch_master(b"mym 127.0.0.1 6379 127.0.0.1 6380 x", "mym"), None);
    }
}
