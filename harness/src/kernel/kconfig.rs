//! A kernel's `.config`: reading an option's value, and refusing a config that lacks what
//! phyr needs (VFIO behind an IOMMU, initramfs and serial console support).

use anyhow::{bail, Result};

/// Config options phyr needs: (option, may it be a module?).
pub const NEEDED: &[(&str, bool)] = &[
    ("CONFIG_BLK_DEV_INITRD", false),
    ("CONFIG_DEVTMPFS", false),
    ("CONFIG_SERIAL_8250_CONSOLE", false),
    ("CONFIG_PCI", false),
    ("CONFIG_INTEL_IOMMU", false),
    ("CONFIG_VFIO", true),
    ("CONFIG_VFIO_IOMMU_TYPE1", true),
    ("CONFIG_VFIO_PCI", true),
];

/// The value of `option` in the text of a `.config` (`y`, `m`, a number, a quoted string as
/// written), or `None` when it is not set.
pub fn config_value<'a>(config: &'a str, option: &str) -> Option<&'a str> {
    config.lines().find_map(|l| l.strip_prefix(option)?.strip_prefix('='))
}

/// Refuses a kernel config that lacks something phyr needs, naming every missing option.
pub fn check_config(config: &str, origin: &str) -> Result<()> {
    let missing: Vec<String> = NEEDED
        .iter()
        .filter(|(opt, module_ok)| match config_value(config, opt) {
            Some("y") => false,
            Some("m") => !module_ok,
            _ => true,
        })
        .map(|(opt, module_ok)| {
            if *module_ok {
                format!("{opt}=y|m")
            } else {
                format!("{opt}=y")
            }
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "the guest kernel ({origin}) lacks {}; phyr's guest driver needs VFIO behind an IOMMU. \
             Enable them (e.g. `scripts/config -e VFIO -e VFIO_PCI -e VFIO_IOMMU_TYPE1 -e INTEL_IOMMU`) or drop --kernel to use Debian's kernel",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_check_names_what_is_missing() {
        let ok = "CONFIG_BLK_DEV_INITRD=y\nCONFIG_DEVTMPFS=y\nCONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_PCI=y\nCONFIG_INTEL_IOMMU=y\nCONFIG_VFIO=m\nCONFIG_VFIO_IOMMU_TYPE1=m\nCONFIG_VFIO_PCI=y\n";
        assert!(check_config(ok, "x").is_ok());
        let no_iommu = ok.replace("CONFIG_INTEL_IOMMU=y", "# CONFIG_INTEL_IOMMU is not set");
        let e = check_config(&no_iommu, ".config").unwrap_err().to_string();
        assert!(
            e.contains("lacks CONFIG_INTEL_IOMMU=y") && !e.contains("CONFIG_VFIO"),
            "{e}"
        );
        let e = check_config(&ok.replace("CONFIG_VFIO_PCI=y", ""), "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("CONFIG_VFIO_PCI=y|m"), "{e}");
        assert!(check_config(&ok.replace("CONFIG_DEVTMPFS=y", "CONFIG_DEVTMPFS=m"), "c").is_err());
    }
}
