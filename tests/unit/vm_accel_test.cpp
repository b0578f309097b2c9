// Unit tests for accelerator choice, TSC parsing and QEMU version parsing.
#include <gtest/gtest.h>

#include "vm/accel.h"
#include "vm/qemu_version.h"

using namespace kiln::vm;
using kiln::ErrorCode;

TEST(Accel, ParsesModes) {
    EXPECT_EQ(*parse_accel_mode("auto"), AccelMode::Auto);
    EXPECT_EQ(*parse_accel_mode("kvm"), AccelMode::Kvm);
    EXPECT_EQ(*parse_accel_mode("tcg"), AccelMode::Tcg);
    EXPECT_FALSE(parse_accel_mode("hvf").ok());
}

TEST(Accel, PvmHostFallsBackToTcgWithAReason) {
    KvmProbe pvm;
    pvm.kvm_pvm = true;
    pvm.dev_kvm_exists = true;
    pvm.dev_kvm_opens = true;
    auto choice = choose_accel(AccelMode::Auto, pvm);
    ASSERT_TRUE(choice.ok());
    EXPECT_EQ(choice->accel, Accel::Tcg);
    EXPECT_EQ(choice->reason,
              "kvm_pvm is loaded but neither kvm_intel nor kvm_amd: /dev/kvm is PVM, which cannot run a stock guest; "
              "using TCG");
    auto forced = choose_accel(AccelMode::Kvm, pvm);
    ASSERT_FALSE(forced.ok());
    EXPECT_EQ(forced.error().code, ErrorCode::KvmUnavailable);
    EXPECT_NE(forced.error().message.find("PVM"), std::string::npos);
}

TEST(Accel, HardwareKvmIsPickedByAuto) {
    KvmProbe intel;
    intel.kvm_intel = true;
    intel.dev_kvm_exists = true;
    intel.dev_kvm_opens = true;
    auto choice = choose_accel(AccelMode::Auto, intel);
    ASSERT_TRUE(choice.ok());
    EXPECT_EQ(choice->accel, Accel::Kvm);
    EXPECT_EQ(choose_accel(AccelMode::Tcg, intel)->accel, Accel::Tcg);
    EXPECT_EQ(choose_accel(AccelMode::Kvm, intel)->accel, Accel::Kvm);
}

TEST(Accel, UnopenableDevKvmMeansTcg) {
    KvmProbe amd;
    amd.kvm_amd = true;
    amd.dev_kvm_exists = true;
    amd.dev_kvm_error = "Permission denied";
    auto choice = choose_accel(AccelMode::Auto, amd);
    ASSERT_TRUE(choice.ok());
    EXPECT_EQ(choice->accel, Accel::Tcg);
    EXPECT_NE(choice->reason.find("Permission denied"), std::string::npos);
    EXPECT_FALSE(choose_accel(AccelMode::Kvm, amd).ok());
    KvmProbe none;
    EXPECT_EQ(choose_accel(AccelMode::Auto, none)->accel, Accel::Tcg);
}

TEST(Accel, CpuinfoMhzBecomesKhz) {
    EXPECT_EQ(*parse_cpuinfo_khz("processor\t: 0\ncpu MHz\t\t: 2100.000\n"), 2100000u);
    EXPECT_EQ(*parse_cpuinfo_khz("cpu MHz : 2893.204\ncpu MHz : 1.0\n"), 2893204u);
    EXPECT_FALSE(parse_cpuinfo_khz("processor : 0\n").ok());
    EXPECT_FALSE(parse_cpuinfo_khz("cpu MHz : fast\n").ok());
}

TEST(QemuVersion, ParsesBanners) {
    auto v = parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright");
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->to_string(), "7.2.22");
    EXPECT_TRUE(v->at_least(7, 2));
    EXPECT_FALSE(v->at_least(8, 0));
    auto two = parse_qemu_version("QEMU emulator version 8.0\n");
    ASSERT_TRUE(two.ok());
    EXPECT_EQ(two->to_string(), "8.0.0");
    EXPECT_FALSE(parse_qemu_version("something else").ok());
    EXPECT_FALSE(parse_qemu_version("QEMU emulator version x").ok());
}
