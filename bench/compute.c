/* Compute benchmark guest: integer work typical of real programs, run
 * bare-metal in M-mode on colo and on qemu-system-riscv64 -M virt.
 *
 * Three kernels, each roughly a third of the run:
 *   - matmul: dense 64x64 uint64 matrix multiply (loads, mul, adds, loops)
 *   - crc32:  table-driven CRC-32 over a 256 KiB buffer (byte loads,
 *             table lookups, shifts, xors)
 *   - sort:   quicksort of 100,000 pseudo-random uint32 values
 *             (data-dependent branches, recursion, stores)
 *
 * For every kernel the guest prints a "<name> checksum: 0x..." line. The
 * values depend only on the program, so they must be identical on every
 * correct emulator; bench/run_compute.sh compares them between colo and
 * QEMU.
 * The guest also checks itself where that is cheap (a CRC-32 test vector,
 * sortedness, a spot-checked matrix element) and exits with status 1 on a
 * mismatch, so a broken emulator fails loudly even without a reference.
 *
 * Then come "<name> instructions: N" lines (minstret differences around
 * each kernel, which do not depend on UART timing and so are exactly
 * reproducible) and "instructions: N", the value of minstret at the end:
 * the retired instruction count of the whole run. On QEMU without -icount
 * minstret is not an instruction count, so the harness only uses colo's
 * value (the binary is deterministic, so it is the same work on both
 * machines). The final line is "result: ok" or "result: FAILED".
 *
 * Size: about 750 M guest instructions in total, i.e. 1-3 s at a few
 * hundred MIPS. The repetition counts below set the budget. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

/* --- Pseudo-random numbers ---------------------------------------------- */

/* xorshift64: cheap, deterministic, and good enough to make branch
 * outcomes in the sort unpredictable. Never seeded with zero. */
static uint64_t random_state = 0x9e3779b97f4a7c15ull;

static uint64_t random_next(void)
{
    uint64_t x = random_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    random_state = x;
    return x;
}

/* Folds a value into a running checksum. The multiply makes the result
 * depend on the order of the values, so a kernel that produces the right
 * values in the wrong order is still caught. */
static uint64_t checksum_mix(uint64_t checksum, uint64_t value)
{
    return (checksum ^ value) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
}

static void print_checksum(const char *kernel, uint64_t checksum)
{
    guest_puts(kernel);
    guest_puts(" checksum: 0x");
    guest_put_hex(checksum);
    guest_putc('\n');
}

/* Per-kernel counts help to see where time goes. They are named
 * "<kernel> instructions:" so they never match the harness's
 * "^instructions:" pattern, which is reserved for the total. */
static void print_kernel_instructions(const char *kernel, uint64_t count)
{
    guest_puts(kernel);
    guest_puts(" instructions: ");
    guest_put_decimal(count);
    guest_putc('\n');
}

/* --- Matrix multiply ---------------------------------------------------- */

/* 64x64 uint64 is 32 KiB per matrix: large enough that the loops dominate,
 * small enough to keep the run short per repetition. Unsigned arithmetic
 * wraps, which is defined behaviour in C, unlike signed overflow. */
#define MATRIX_SIZE 64
#define MATMUL_REPETITIONS 116

static uint64_t matrix_a[MATRIX_SIZE][MATRIX_SIZE];
static uint64_t matrix_b[MATRIX_SIZE][MATRIX_SIZE];
static uint64_t matrix_c[MATRIX_SIZE][MATRIX_SIZE];

/* i-k-j loop order: the inner loop walks rows of B and C contiguously. */
__attribute__((noinline)) static void matrix_multiply(void)
{
    for (size_t i = 0; i < MATRIX_SIZE; i++) {
        for (size_t j = 0; j < MATRIX_SIZE; j++)
            matrix_c[i][j] = 0;
        for (size_t k = 0; k < MATRIX_SIZE; k++) {
            uint64_t a_ik = matrix_a[i][k];
            for (size_t j = 0; j < MATRIX_SIZE; j++)
                matrix_c[i][j] += a_ik * matrix_b[k][j];
        }
    }
}

/* Recomputes one element the slow, obvious way, as an independent check
 * of the optimised loop nest. */
static uint64_t matrix_element(size_t row, size_t column)
{
    uint64_t sum = 0;
    for (size_t k = 0; k < MATRIX_SIZE; k++)
        sum += matrix_a[row][k] * matrix_b[k][column];
    return sum;
}

static bool run_matmul(uint64_t *checksum_out)
{
    for (size_t i = 0; i < MATRIX_SIZE; i++) {
        for (size_t j = 0; j < MATRIX_SIZE; j++) {
            /* Small signed-looking values as well as large ones, so the
             * products exercise both the low and the high bits. */
            matrix_a[i][j] = random_next() >> (i & 31);
            matrix_b[i][j] = random_next() >> (j & 31);
        }
    }

    uint64_t checksum = 0;
    bool ok = true;
    for (int repetition = 0; repetition < MATMUL_REPETITIONS; repetition++) {
        matrix_multiply();
        for (size_t i = 0; i < MATRIX_SIZE; i++)
            for (size_t j = 0; j < MATRIX_SIZE; j++)
                checksum = checksum_mix(checksum, matrix_c[i][j]);

        size_t row = (size_t)repetition % MATRIX_SIZE;
        size_t column = (size_t)(repetition * 7) % MATRIX_SIZE;
        if (matrix_c[row][column] != matrix_element(row, column))
            ok = false;
        /* Feed a result back into A so every repetition computes
         * something new and none can be skipped or hoisted. */
        matrix_a[row][column] ^= matrix_c[column][row];
    }
    *checksum_out = checksum;
    if (!ok)
        guest_puts("matmul FAILED: spot check mismatch\n");
    return ok;
}

/* --- CRC-32 ------------------------------------------------------------- */

/* The reflected IEEE 802.3 polynomial, as used by zlib, Ethernet, PNG. */
#define CRC32_POLYNOMIAL 0xedb88320u
#define CRC_BUFFER_BYTES (256u * 1024u)
#define CRC_PASSES 85

static uint32_t crc32_table[256];
static uint8_t crc_buffer[CRC_BUFFER_BYTES];

static void crc32_build_table(void)
{
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t value = byte;
        for (int bit = 0; bit < 8; bit++)
            value = (value >> 1) ^ (CRC32_POLYNOMIAL & -(value & 1));
        crc32_table[byte] = value;
    }
}

__attribute__((noinline)) static uint32_t crc32(const uint8_t *data, size_t length)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < length; i++)
        crc = (crc >> 8) ^ crc32_table[(crc ^ data[i]) & 0xff];
    return ~crc;
}

static bool run_crc32(uint64_t *checksum_out)
{
    crc32_build_table();

    /* The standard check value: CRC-32 of "123456789" is 0xcbf43926. */
    static const uint8_t check_input[] = "123456789";
    bool ok = crc32(check_input, 9) == 0xcbf43926u;

    for (size_t i = 0; i < CRC_BUFFER_BYTES; i += 8) {
        uint64_t word = random_next();
        for (size_t byte = 0; byte < 8; byte++)
            crc_buffer[i + byte] = (uint8_t)(word >> (8 * byte));
    }

    uint64_t checksum = 0;
    for (int pass = 0; pass < CRC_PASSES; pass++) {
        uint32_t crc = crc32(crc_buffer, CRC_BUFFER_BYTES);
        checksum = checksum_mix(checksum, crc);
        /* Change the data a little so each pass has a different result. */
        crc_buffer[(crc * 2654435761u) % CRC_BUFFER_BYTES] ^= (uint8_t)(crc | 1);
    }
    *checksum_out = checksum;
    if (!ok)
        guest_puts("crc32 FAILED: check value of \"123456789\" is wrong\n");
    return ok;
}

/* --- Sort --------------------------------------------------------------- */

#define SORT_ELEMENTS 100000
#define SORT_REPETITIONS 16
/* Below this size insertion sort beats partitioning. */
#define INSERTION_SORT_LIMIT 16

static uint32_t sort_array[SORT_ELEMENTS];

static void insertion_sort(uint32_t *values, size_t count)
{
    for (size_t i = 1; i < count; i++) {
        uint32_t value = values[i];
        size_t j = i;
        while (j > 0 && values[j - 1] > value) {
            values[j] = values[j - 1];
            j--;
        }
        values[j] = value;
    }
}

static void swap_values(uint32_t *a, uint32_t *b)
{
    uint32_t t = *a;
    *a = *b;
    *b = t;
}

/* Quicksort with a median-of-three pivot and Hoare partitioning. It
 * recurses into the smaller part and loops on the larger one, so the
 * recursion depth stays below log2(n) and fits the 64 KiB guest stack. */
__attribute__((noinline)) static void quicksort(uint32_t *values, size_t count)
{
    while (count > INSERTION_SORT_LIMIT) {
        size_t middle = count / 2;
        if (values[middle] < values[0])
            swap_values(&values[middle], &values[0]);
        if (values[count - 1] < values[0])
            swap_values(&values[count - 1], &values[0]);
        if (values[count - 1] < values[middle])
            swap_values(&values[count - 1], &values[middle]);
        uint32_t pivot = values[middle];

        size_t left = 0;
        size_t right = count - 1;
        for (;;) {
            while (values[left] < pivot)
                left++;
            while (values[right] > pivot)
                right--;
            if (left >= right)
                break;
            swap_values(&values[left], &values[right]);
            left++;
            right--;
        }
        /* values[0..right] <= pivot <= values[right+1..count-1]. */
        size_t lower_count = right + 1;
        size_t upper_count = count - lower_count;
        if (lower_count < upper_count) {
            quicksort(values, lower_count);
            values += lower_count;
            count = upper_count;
        } else {
            quicksort(values + lower_count, upper_count);
            count = lower_count;
        }
    }
    insertion_sort(values, count);
}

static bool run_sort(uint64_t *checksum_out)
{
    uint64_t checksum = 0;
    bool ok = true;
    for (int repetition = 0; repetition < SORT_REPETITIONS; repetition++) {
        uint64_t input_sum = 0;
        for (size_t i = 0; i < SORT_ELEMENTS; i++) {
            sort_array[i] = (uint32_t)(random_next() >> 32);
            input_sum += sort_array[i];
        }

        quicksort(sort_array, SORT_ELEMENTS);

        /* Sorted, and still the same multiset (as far as a sum can tell). */
        uint64_t output_sum = sort_array[0];
        for (size_t i = 1; i < SORT_ELEMENTS; i++) {
            if (sort_array[i - 1] > sort_array[i])
                ok = false;
            output_sum += sort_array[i];
        }
        if (output_sum != input_sum)
            ok = false;

        /* Sample the sorted order rather than mixing all 100k elements:
         * the order check above already reads every element. */
        for (size_t i = 0; i < SORT_ELEMENTS; i += 97)
            checksum = checksum_mix(checksum, sort_array[i]);
        checksum = checksum_mix(checksum, output_sum);
    }
    *checksum_out = checksum;
    if (!ok)
        guest_puts("sort FAILED: output not sorted or elements lost\n");
    return ok;
}

/* --- Main --------------------------------------------------------------- */

int main(void)
{
    guest_puts("colo compute benchmark\n");
    bool ok = true;

    /* The kernels print nothing unless they fail: waiting for the UART
     * can take a varying number of polling loops, which would make the
     * per-kernel instruction counts differ from run to run. */
    uint64_t matmul_checksum, crc32_checksum, sort_checksum;
    uint64_t start = guest_read_instret();
    ok &= run_matmul(&matmul_checksum);
    uint64_t after_matmul = guest_read_instret();
    ok &= run_crc32(&crc32_checksum);
    uint64_t after_crc32 = guest_read_instret();
    ok &= run_sort(&sort_checksum);
    uint64_t after_sort = guest_read_instret();

    print_checksum("matmul", matmul_checksum);
    print_checksum("crc32", crc32_checksum);
    print_checksum("sort", sort_checksum);
    print_kernel_instructions("matmul", after_matmul - start);
    print_kernel_instructions("crc32", after_crc32 - after_matmul);
    print_kernel_instructions("sort", after_sort - after_crc32);

    guest_puts("instructions: ");
    guest_put_decimal(guest_read_instret());
    guest_putc('\n');

    guest_puts(ok ? "result: ok\n" : "result: FAILED\n");
    return ok ? 0 : 1;
}
