// The snapshot format: Kiln's metadata file (kiln-snapshot.json) and the checks that refuse an
// incompatible or damaged snapshot before anything starts. See docs/snapshot-format.md.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace kiln::vm {

inline constexpr const char* kSnapshotMagic = "kiln-snapshot";
inline constexpr int kSnapshotFormatVersion = 1;
inline constexpr const char* kManifestFileName = "kiln-snapshot.json";
inline constexpr const char* kStateFileName = "state";        // QEMU device state (x-ignore-shared stream)
inline constexpr const char* kMemoryFileName = "memory";      // guest RAM, sparse: zero pages are holes
inline constexpr const char* kDiskFileName = "disk.ext4";     // the root disk as of the snapshot
inline constexpr uint64_t kMaxStateBytes = 64ull << 20;       // device state is ~50 KB; anything huge is damage
inline constexpr size_t kMaxManifestBytes = 64 * 1024;

struct SnapshotFileInfo {
    uint64_t size = 0;
    std::string sha256;
};

struct SnapshotManifest {
    std::string id;
    std::string parent_id;  // the snapshot this VM was restored from, if any
    int64_t created_unix_ms = 0;
    std::string kernel_release;
    std::string kernel_sha256;
    std::string image_name;
    std::string image_key;
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    std::string accel;         // "tcg" or "kvm": device state of one does not load into the other
    std::string qemu_version;  // the migration stream is only trusted within one QEMU version
    std::string machine = "microvm";
    bool nic = false;  // taken with a virtio-net NIC: restores need one too ("nic" only written when true)
    SnapshotFileInfo state;
    SnapshotFileInfo memory;
    SnapshotFileInfo disk;
};

// The host facts a snapshot must match to be restored here.
struct SnapshotHost {
    std::string accel;
    std::string qemu_version;
};

// Canonical text: the fields in a fixed order, then manifest_sha256 over that text.
std::string serialize_manifest(const SnapshotManifest& manifest);
// Refuses: not JSON, wrong magic, another format version, a bad checksum, missing or mistyped fields.
Result<SnapshotManifest> parse_manifest(const std::string& text);

Status check_compatible(const SnapshotManifest& manifest, const SnapshotHost& host);

enum class VerifyLevel {
    Sizes,     // every file present with its recorded size; the state file's checksum (it is small)
    Checksums  // and the full SHA-256 of memory and disk
};
// Loads the manifest of snapshot directory `dir` and checks its files at `level`.
Result<SnapshotManifest> load_and_verify(const std::string& dir, VerifyLevel level);

// Fills `info` from the file at `path` (size and SHA-256).
Result<SnapshotFileInfo> describe_file(const std::string& path);

}  // namespace kiln::vm
