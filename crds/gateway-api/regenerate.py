#!/usr/bin/env python3
"""Regenerates src/gateway_api/*.rs from the Gateway API CRDs in this directory (the v1.5.1
Standard channel, as released upstream). Needs `kopium` (`cargo install kopium`).

kopium's output is kept as it is, with one addition: every enum gets an `Unknown` variant that
takes any value it does not list (`#[serde(other)]`). A newer or Experimental-channel value in
one object (say, another controller's HTTPRoute with a filter type this version does not know)
then reads as `Unknown`, which hawser reports, instead of failing the whole list of objects.
"""
import pathlib
import re
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent.parent / "src" / "gateway_api"
KINDS = ["backendtlspolicies", "gatewayclasses", "gateways", "httproutes", "referencegrants"]
UNKNOWN = ("    /// A value this version does not list (a newer or Experimental-channel one).\n"
           "    #[serde(other)]\n    Unknown,\n")


def with_unknown_variants(source: str) -> str:
    """Adds `Unknown` before the closing brace of every `pub enum`."""
    return re.sub(r"(pub enum \w+ \{\n(?:.*\n)*?)\}", lambda m: m.group(1) + UNKNOWN + "}", source)


def main() -> None:
    for kind in KINDS:
        command = ["kopium", "--api-version", "v1", "--schema=derived", "--derive=PartialEq", "--docs",
                   "-f", f"{kind}.yaml"]
        generated = subprocess.run(command, check=True, capture_output=True, text=True, cwd=HERE).stdout
        (OUT / f"{kind}.rs").write_text(with_unknown_variants(generated))


if __name__ == "__main__":
    main()
