//! Prints URIs crafted to collide under nginx-clojure's hash, MurmurHash3 x86
//! 32-bit with seed 0: each one's hash falls into bucket 0 of a table of
//! BUCKETS buckets, as an attacker would compute them offline. With `ordinary`,
//! prints as many ordinary URIs of the same length instead.
//!
//!     cargo run --release -p shared-map-engine --example flood_keys -- 11000 16384 [ordinary]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(11_000);
    let buckets: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16_384);
    let ordinary = args.get(3).is_some_and(|a| a == "ordinary");
    let mask = buckets - 1;
    if ordinary {
        for i in 0..n as u64 {
            println!("/o/{:010x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24);
        }
        return;
    }
    let mut found = 0;
    let mut uri = *b"/f/0000000000";
    let mut i: u64 = 0;
    while found < n {
        for (d, byte) in uri[3..].iter_mut().rev().enumerate() {
            *byte = b"0123456789abcdef"[(i >> (4 * d)) as usize & 15];
        }
        if mur3::murmurhash3_x86_32(&uri, 0) & mask == 0 {
            println!("{}", String::from_utf8_lossy(&uri));
            found += 1;
        }
        i += 1;
    }
}
