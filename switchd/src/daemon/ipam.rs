//! Address assignment within one host: the lowest free address of a subnet.
//! Pure: the caller says which addresses are taken.

use std::net::IpAddr;

use switchd_config::Subnet;

/// The first assignable address of `subnet` that is not the gateway and not
/// `taken`. `None` when the subnet is full.
pub fn next_free(subnet: Subnet, gateway: Option<IpAddr>, taken: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    (1u128..).map_while(|n| subnet.nth_host(n)).find(|ip| Some(*ip) != gateway && !taken(*ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_skipping_gateway_and_taken() {
        let subnet: Subnet = "10.0.0.0/29".parse().unwrap();
        let gw = Some("10.0.0.1".parse().unwrap());
        assert_eq!(next_free(subnet, gw, |_| false), Some("10.0.0.2".parse().unwrap()));
        let taken = |ip: IpAddr| ip.to_string() == "10.0.0.2" || ip.to_string() == "10.0.0.4";
        assert_eq!(next_free(subnet, gw, taken), Some("10.0.0.3".parse().unwrap()));
    }

    #[test]
    fn exhaustion() {
        let subnet: Subnet = "10.0.0.0/30".parse().unwrap();
        let gw = Some("10.0.0.1".parse().unwrap());
        assert_eq!(next_free(subnet, gw, |_| false), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(next_free(subnet, gw, |_| true), None);
    }

    #[test]
    fn ipv6() {
        let subnet: Subnet = "fd00::/64".parse().unwrap();
        assert_eq!(next_free(subnet, Some("fd00::1".parse().unwrap()), |_| false), Some("fd00::2".parse().unwrap()));
    }
}
