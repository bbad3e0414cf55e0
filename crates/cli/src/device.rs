//! Where a run trains: the CPU (Burn's `flex` backend with the project's fused kernels), or
//! with the `gpu` feature a GPU through Burn's wgpu backend. The same loop, the same model
//! code: tensors carry their device, and the fused CPU kernels step aside for Burn's own
//! operations on any other device.

use anyhow::Result;
use burn::tensor::Device;
use scalelab_spec::TrainDevice;

/// The device `choice` names, and how the record names it (`machine.backend`).
pub(crate) fn open(choice: TrainDevice) -> Result<(Device, String)> {
    match choice {
        TrainDevice::Cpu => Ok((Device::flex(), "burn-flex (cpu)".to_string())),
        TrainDevice::Gpu => gpu(),
    }
}

/// The default wgpu adapter (a discrete GPU first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides
/// it), opened now so that a machine without a usable one is told at once, with its name.
#[cfg(feature = "gpu")]
fn gpu() -> Result<(Device, String)> {
    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    let opened = std::panic::catch_unwind(|| device.identity());
    let name = match opened {
        Ok(Some(identity)) => identity.name,
        Ok(None) => "unnamed adapter".to_string(),
        Err(_) => anyhow::bail!(
            "--device gpu: no GPU adapter could be opened (wgpu found no Vulkan, Metal or DirectX 12 device)\nhint: install the GPU's Vulkan driver; on Linux without a GPU, Mesa's lavapipe runs the same code on the CPU (apt install mesa-vulkan-drivers); or train with --device cpu"
        ),
    };
    Ok((device, format!("burn-wgpu ({name})")))
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<(Device, String)> {
    anyhow::bail!(
        "--device gpu: this scalelab was built without GPU support\nhint: build it with `cargo build --release --features gpu` (Burn's wgpu backend: a Vulkan, Metal or DirectX 12 driver at run time), or train with --device cpu"
    )
}
