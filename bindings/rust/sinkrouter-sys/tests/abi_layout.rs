//! Fails when the Rust declarations drift from sinkrouter.h: compares every struct size, field
//! offset, enum value and function name with the output of the C program named by
//! SR_ABI_LAYOUT_DUMP (build/<preset>/bindings/sr_abi_layout_dump), which prints what the C
//! compiler sees, one fact a line.
use std::collections::BTreeSet;
use std::process::Command;

use sinkrouter_sys as sys;

/// The header's facts as the C compiler reports them.
fn c_facts() -> BTreeSet<String> {
    let dump = std::env::var_os("SR_ABI_LAYOUT_DUMP").unwrap_or_else(|| {
        panic!(
            "SR_ABI_LAYOUT_DUMP is not set: point it at the sr_abi_layout_dump program of a CMake \
             build (build/default/bindings/sr_abi_layout_dump) so the declarations can be \
             checked against the header"
        )
    });
    let output = Command::new(&dump)
        .output()
        .unwrap_or_else(|e| panic!("cannot run SR_ABI_LAYOUT_DUMP={}: {e}", dump.to_string_lossy()));
    assert!(output.status.success(), "{} exited with {}", dump.to_string_lossy(), output.status);
    let text = String::from_utf8(output.stdout).expect("the layout dump prints UTF-8");
    let facts: BTreeSet<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    for fact in &facts {
        let kind = fact.split(' ').next().unwrap_or("");
        assert!(
            matches!(kind, "struct" | "field" | "enum" | "function"),
            "the layout dump printed a line this test does not understand: {fact:?}"
        );
    }
    assert!(facts.iter().any(|f| f.starts_with("function ")), "the layout dump listed no function");
    facts
}

/// The same facts from the Rust declarations, in the dump's format.
fn rust_facts() -> BTreeSet<String> {
    let mut facts = BTreeSet::new();
    for layout in sys::STRUCT_LAYOUTS {
        facts.insert(format!("struct {} {}", layout.name, layout.size));
        for (field, offset) in layout.fields {
            facts.insert(format!("field {}.{} {}", layout.name, field, offset));
        }
    }
    for value in sys::ENUM_VALUES {
        facts.insert(format!("enum {}.{} {}", value.enum_name, value.name, value.value));
    }
    for name in sys::FUNCTION_NAMES {
        facts.insert(format!("function {name}"));
    }
    facts
}

#[test]
fn declarations_match_the_header() {
    let c = c_facts();
    let rust = rust_facts();
    let missing: Vec<&String> = c.difference(&rust).collect();
    let extra: Vec<&String> = rust.difference(&c).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "sinkrouter-sys drifted from sinkrouter.h\n  in the header, not (or not so) in Rust: {missing:#?}\n  \
         in Rust, not (or not so) in the header: {extra:#?}"
    );
}

#[test]
fn every_declared_function_resolves_in_the_library() {
    for (name, address) in sys::function_addresses() {
        assert_ne!(address, 0, "{name} resolved to a null address");
    }
}

#[test]
fn abi_version_matches_the_header_and_the_loaded_library() {
    let version_h = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../include/sinkrouter/version.h");
    let text = std::fs::read_to_string(version_h).unwrap_or_else(|e| panic!("cannot read {version_h}: {e}"));
    let header_abi: u32 = text
        .lines()
        .find_map(|line| line.strip_prefix("#define SR_ABI_VERSION "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{version_h} defines no numeric SR_ABI_VERSION"));
    assert_eq!(sys::SR_ABI_VERSION, header_abi, "sinkrouter-sys::SR_ABI_VERSION differs from version.h");
    assert_eq!(unsafe { sys::sr_abi_version() }, header_abi, "the loaded library has another ABI version");
}
