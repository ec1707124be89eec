//! The Debian package (`scripts/package.sh`): built from this build's
//! binaries, installed with `dpkg -i` into a scratch root (its own dpkg
//! database, nothing of the machine touched), every file where it belongs
//! and working, then purged without a trace.

use std::path::Path;

use switchd_e2e::{bin, repo_file, require_root, run};

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_installs_every_file_where_it_belongs_and_purges_cleanly() {
    require_root();
    let scratch = std::env::temp_dir().join(format!("sdt-pkg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (out, root) = (scratch.join("out"), scratch.join("root"));
    let bins = bin("switchd").parent().unwrap().to_owned();
    let script = repo_file("scripts/package.sh");
    let built = run(
        "env",
        &[
            &format!("SWITCHD_BIN_DIR={}", bins.display()),
            &format!("OUT_DIR={}", out.display()),
            "DEB_COMPRESSION=none",
            "bash",
            script.to_str().unwrap(),
        ],
    );
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");
    let info = ok("dpkg-deb", &["--field", &deb, "Package", "Version", "Depends"]);
    assert!(info.contains("Package: switchd") && info.contains("Depends: iproute2"), "{info}");

    // A root with a dpkg database of its own.
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let at = format!("--root={}", root.display());
    // iproute2 is this machine's, not the scratch root's: depends forced.
    ok("dpkg", &[&at, "--force-script-chrootless", "--force-depends", "-i", &deb]);
    let files = [
        "usr/bin/switchd",
        "usr/bin/switchctl",
        "usr/lib/cni/switchd-cni",
        "lib/systemd/system/switchd.service",
        "etc/switchd/host.toml",
        "usr/share/switchd/grafana/switchd.json",
        "usr/share/doc/switchd/README.md",
    ];
    for file in files {
        assert!(root.join(file).exists(), "{file} not installed");
    }
    let version = ok(root.join("usr/bin/switchd").to_str().unwrap(), &["--version"]);
    assert!(version.contains("(commit "), "{version}");
    let config = root.join("etc/switchd/host.toml");
    let check = ok(root.join("usr/bin/switchd").to_str().unwrap(), &["--config", config.to_str().unwrap(), "--check"]);
    assert!(check.contains("valid"), "the example config validates: {check}");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/switchd.service")).unwrap();
    assert!(
        unit.contains("Type=notify") && unit.contains("ExecStart=/usr/bin/switchd --config /etc/switchd/host.toml")
    );
    let listed = ok("dpkg", &[&at, "-L", "switchd"]);
    assert!(files.iter().all(|f| listed.contains(&format!("/{f}"))), "{listed}");

    // Purged: every file gone, the conffile too.
    ok("dpkg", &[&at, "--force-script-chrootless", "--purge", "switchd"]);
    for file in files {
        assert!(!root.join(file).exists(), "{file} left behind");
    }
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(!status.contains("Package: switchd"), "{status}");
    let _ = std::fs::remove_dir_all(&scratch);
}
