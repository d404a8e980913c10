//! Machine types: what `resources.machineType` means in cpu, memory and GPUs.
//!
//! The names are Paperspace's. A multi-GPU form such as `A100-80Gx8` multiplies the single-GPU
//! machine. The Kubernetes backend turns a machine into requests, a GPU resource, a node selector
//! on the label NVIDIA's GPU feature discovery sets and a toleration for GPU taints; the table is
//! repeated in docs/spec.md.

/// What one machine type provides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineType {
    /// The name as written in specs.
    pub name: &'static str,
    /// Cpu cores.
    pub cpu: u32,
    /// Memory in GiB.
    pub memory_gib: u32,
    /// GPUs.
    pub gpus: u32,
    /// Value of the `nvidia.com/gpu.product` node label for this GPU, if it has one.
    pub gpu_product: Option<&'static str>,
}

const fn cpu(name: &'static str, cpu: u32, memory_gib: u32) -> MachineType {
    MachineType {
        name,
        cpu,
        memory_gib,
        gpus: 0,
        gpu_product: None,
    }
}

const fn gpu(name: &'static str, cpu: u32, memory_gib: u32, product: &'static str) -> MachineType {
    MachineType {
        name,
        cpu,
        memory_gib,
        gpus: 1,
        gpu_product: Some(product),
    }
}

/// Every single-GPU or cpu-only machine type lull knows.
pub const MACHINE_TYPES: &[MachineType] = &[
    cpu("C4", 2, 4),
    cpu("C5", 4, 8),
    cpu("C7", 12, 30),
    gpu("P4000", 8, 30, "Quadro-P4000"),
    gpu("P5000", 8, 30, "Quadro-P5000"),
    gpu("P6000", 8, 30, "Quadro-P6000"),
    gpu("RTX4000", 8, 30, "Quadro-RTX-4000"),
    gpu("RTX5000", 8, 30, "Quadro-RTX-5000"),
    gpu("A4000", 8, 45, "NVIDIA-RTX-A4000"),
    gpu("A5000", 8, 45, "NVIDIA-RTX-A5000"),
    gpu("A6000", 8, 45, "NVIDIA-RTX-A6000"),
    gpu("V100", 8, 30, "Tesla-V100-SXM2-16GB"),
    gpu("V100-32G", 8, 30, "Tesla-V100-SXM2-32GB"),
    gpu("T4", 4, 16, "Tesla-T4"),
    gpu("A10", 8, 32, "NVIDIA-A10"),
    gpu("L4", 8, 32, "NVIDIA-L4"),
    gpu("A100", 12, 90, "NVIDIA-A100-SXM4-40GB"),
    gpu("A100-80G", 12, 90, "NVIDIA-A100-SXM4-80GB"),
    gpu("H100", 20, 250, "NVIDIA-H100-80GB-HBM3"),
];

/// The machine a name stands for, `xN` suffixes included (`A100-80Gx8` is eight A100-80G).
pub fn lookup(name: &str) -> Option<MachineType> {
    if let Some(m) = MACHINE_TYPES
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
    {
        return Some(*m);
    }
    let (base, count) = name.rsplit_once(['x', 'X'])?;
    let count: u32 = count.parse().ok().filter(|n| (2..=16).contains(n))?;
    let base = MACHINE_TYPES
        .iter()
        .find(|m| m.gpus > 0 && m.name.eq_ignore_ascii_case(base))?;
    Some(MachineType {
        cpu: base.cpu * count,
        memory_gib: base.memory_gib * count,
        gpus: count,
        ..*base
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_gpu_machines_multiply() {
        let m = lookup("A100-80Gx8").expect("known");
        assert_eq!((m.gpus, m.cpu, m.memory_gib), (8, 96, 720));
        assert_eq!(lookup("a100-80g").map(|m| m.gpus), Some(1));
        assert!(
            lookup("C4x2").is_none(),
            "cpu machines have no multi-GPU form"
        );
        assert!(lookup("Z9000").is_none());
    }
}
