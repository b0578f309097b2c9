// Where the guest kernel, root file system images and per-VM run directories live, and their sanity checks.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace kiln::vm {

// $KILN_CACHE or /var/cache/kiln: kernels and images (rebuildable).
std::string cache_root();
// $KILN_DATA_DIR or /var/lib/kiln: VMs' run directories, later templates and snapshots.
std::string data_dir();
// $DATA/vms
std::string vms_dir();

struct KernelArtifact {
    std::string path;     // the vmlinux QEMU boots
    std::string release;  // `uname -r` in the guest, from the "release" file beside it; may be empty
    std::string origin;   // "KILN_KERNEL" or the cache link it was found through
};

struct ImageArtifact {
    std::string name;
    std::string rootfs;    // ext4 image
    std::string manifest;  // manifest.json beside it (may not exist)
};

// $KILN_KERNEL, else $KILN_CACHE/kernel/vmlinux. A missing or unreadable kernel is an error
// ("kernel_missing") naming the path and how to build it.
Result<KernelArtifact> find_kernel();
// $KILN_CACHE/images/NAME/rootfs.ext4, checked to be an ext4 image ("image_missing", "image_corrupt").
Result<ImageArtifact> find_image(const std::string& name);
// Image names present in the cache (whatever their state).
std::vector<std::string> list_images();

Status validate_image_name(const std::string& name);
// The file starts like a kernel QEMU can boot (ELF vmlinux or a bzImage).
Status check_kernel_file(const std::string& path);
// The ext4 superblock magic 0xEF53 at byte 1080 ("image_corrupt" otherwise).
Status check_ext4_image(const std::string& path);

// $DATA/vms/<id>; fails when the unix sockets inside would not fit sockaddr_un (108 bytes).
Result<std::string> run_dir_for(const std::string& vm_id);

}  // namespace kiln::vm
