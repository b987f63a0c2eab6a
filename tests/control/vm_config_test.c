/* VM config files: a good file parses into the right values; every kind of
 * mistake is an error naming the file, the line and what was expected. */
#include <stdio.h>
#include <string.h>

#include "vm_config.h"

static int failures;

static void expect_error(const char *text, const char *expected_message)
{
    struct vm_config config;
    struct error err = { "" };
    int result = vm_config_parse_text(text, strlen(text), "vm.cfg", "/base", &config, &err);
    if (result == 0) {
        printf("FAIL: accepted bad config:\n%s\n", text);
        failures++;
    } else if (!strstr(err.message, expected_message)) {
        printf("FAIL: message '%s' does not contain '%s'\n", err.message, expected_message);
        failures++;
    } else {
        printf("ok   %s\n", err.message);
    }
}

static void test_good_file(void)
{
    const char *text = "# a web server\n"
                       "name = \"web-1\"\n"
                       "memory = 256   # MiB\n"
                       "kernel = \"out/Image\"\n"
                       "initrd = \"/abs/initramfs.cpio\"\n"
                       "cmdline = \"console=ttyS0 colo.ip=10.0.0.2/24 quote=\\\"x\\\"\"\n"
                       "disks = [ \"path=disk.img\",\n"
                       "          \"path=seed.img,readonly\" ]\n"
                       "nics = [ \"tap=tap0,mac=52:54:00:12:34:56\" ]\n"
                       "console = \"none\"\n"
                       "vcpus = 1\n";
    struct vm_config config;
    struct error err;
    if (vm_config_parse_text(text, strlen(text), "vm.cfg", "/base", &config, &err) < 0) {
        printf("FAIL: good config rejected: %s\n", err.message);
        failures++;
        return;
    }
    static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
    if (strcmp(config.name, "web-1") || config.memory_mib != 256 || strcmp(config.kernel, "/base/out/Image") ||
        strcmp(config.initrd, "/abs/initramfs.cpio") ||
        strcmp(config.cmdline, "console=ttyS0 colo.ip=10.0.0.2/24 quote=\"x\"") || config.disk_count != 2 ||
        strcmp(config.disks[0].path, "/base/disk.img") || config.disks[0].read_only || !config.disks[1].read_only ||
        config.nic_count != 1 || strcmp(config.nics[0].tap, "tap0") || memcmp(config.nics[0].mac, mac, 6) ||
        config.console != VM_CONSOLE_NONE || strcmp(config.firmware, MACHINE_DEFAULT_FIRMWARE_PATH)) {
        printf("FAIL: good config parsed into wrong values\n");
        failures++;
    } else {
        printf("ok   good config\n");
    }
}

int main(void)
{
    test_good_file();
    const char *minimal = "name = \"a\"\nmemory = 128\nkernel = \"k\"\n";
    (void)minimal;
    expect_error("name = \"a\"\nmemory = lots\n", "vm.cfg:2: memory: expected a \"string\", a number");
    expect_error("name = \"a\"\nmemory = 12\nkernel = \"k\"\n",
                 "vm.cfg:2: memory: expected a whole number of MiB from 64");
    expect_error("name = \"a\"\nmemory = 128x\n", "vm.cfg:2: memory: expected a whole number, found 'x'");
    expect_error("name = \"a\"\nmemroy = 128\n", "vm.cfg:2: unknown key 'memroy' (known: name, memory");
    expect_error("name = \"a\"\n\n\nmemory 128\n", "vm.cfg:4: memory: expected '=' after the key");
    expect_error("name = \"a\nmemory = 128\n", "vm.cfg:1: name: string is not closed");
    expect_error("name = \"a b\"\n", "vm.cfg:1: name: 'a b' may only hold");
    expect_error("name = \"a\"\nname = \"b\"\n", "vm.cfg:2: name: given twice");
    expect_error("memory = 128\nkernel = \"k\"\n", "vm.cfg: missing key 'name'");
    expect_error("name = \"a\"\nkernel = \"k\"\n", "vm.cfg: missing key 'memory'");
    expect_error("name = \"a\"\nmemory = 128\n", "vm.cfg: missing key 'kernel'");
    expect_error("name = \"a\"\nmemory = 128\nkernel = \"\"\n", "vm.cfg:3: kernel: expected a file path");
    expect_error("name = \"a\"\nnics = [ \"tap=tap0,mac=01:00:5e:00:00:01\" ]\n",
                 "vm.cfg:2: nics: mac '01:00:5e:00:00:01' is not a unicast MAC");
    expect_error("name = \"a\"\nnics = [ \"tap=tap0,mac=52:54:00:12:34\" ]\n", "vm.cfg:2: nics: mac '52:54:00:12:34'");
    expect_error("name = \"a\"\nnics = [ \"mac=52:54:00:12:34:56\" ]\n", "vm.cfg:2: nics: item 1 has no tap=NAME");
    expect_error("name = \"a\"\nnics = [ \"tap=averyveryverylongtapname\" ]\n", "vm.cfg:2: nics: tap name");
    expect_error("name = \"a\"\nnics = [ \"tap=t0,speed=10\" ]\n", "vm.cfg:2: nics: unknown nic option 'speed'");
    expect_error("name = \"a\"\nnics = \"tap=t0\"\n", "vm.cfg:2: nics: expected a list");
    expect_error("name = \"a\"\ndisks = [ \"readonly\" ]\n", "vm.cfg:2: disks: item 1 has no path=FILE");
    expect_error("name = \"a\"\ndisks = [ \"path=x\" \"path=y\" ]\n", "vm.cfg:2: disks: expected ',' or ']'");
    expect_error("name = \"a\"\ndisks = [ \"path=x\"\n", "vm.cfg:3: disks: expected ',' or ']' after a list item");
    expect_error("name = \"a\"\ndisks = [ 5 ]\n", "vm.cfg:2: disks: expected a quoted string or ']'");
    expect_error("name = \"a\"\nconsole = \"serial\"\n", "vm.cfg:2: console: expected \"stdio\" or \"none\"");
    expect_error("name = \"a\"\nvcpus = 2\n", "vm.cfg:2: vcpus: expected 1");
    expect_error("name = \"a\" extra\n", "vm.cfg:1: name: unexpected 'e' after the value");
    expect_error("= 5\n", "vm.cfg:1: expected a key");
    expect_error("name =\n", "vm.cfg:1: name: missing value");
    expect_error("cmdline = \"a\\tb\"\n", "vm.cfg:1: cmdline: unknown escape");
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("vm config: all checks passed\n");
    return 0;
}
