//! Arbitrary key-value pairs as another host's published gossip state.
//! Decoding must never panic, and whatever it accepts must hold up: unicast
//! MACs, addresses inside their network's subnet, endpoints only on
//! networks the host declares; and it must survive a round trip.
//!
//! Input: pairs separated by 0xff (any byte that is not UTF-8), key and
//! value by 0x01 (lossy UTF-8).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd_overlay::gossip::state::{self, decode};

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text.split('\u{fffd}').filter_map(|p| p.split_once('\u{1}')).collect();
    let (published, _errors) = decode(pairs.iter().copied());
    let Some(p) = published else { return };
    for e in &p.endpoints {
        assert!(e.mac.is_unicast());
        let net = p.networks.get(&e.network).expect("endpoints only on declared networks");
        if let Some(ip) = e.ip {
            let subnet = net.subnet.expect("an address needs a subnet");
            assert!(subnet.is_assignable(ip) && Some(ip) != net.gateway);
        }
    }
    let encoded = state::encode(&p);
    let (again, errors) = decode(encoded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(again.as_ref(), Some(&p));
}
