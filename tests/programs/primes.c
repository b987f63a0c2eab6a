/* Compiled-code differential test: a sieve of Eratosthenes over a bitmap,
 * trial division, and deterministic Miller-Rabin on 64-bit numbers with
 * 128-bit products (MULHU and libgcc's 128-bit remainder). Results are
 * printed and compared with known values; the exit status is the number of
 * mismatches. */
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

static int failures;

static void expect(const char *what, uint64_t got, uint64_t expected)
{
    guest_puts(what);
    guest_puts(": ");
    guest_put_decimal(got);
    if (got != expected) {
        guest_puts(" FAIL expected ");
        guest_put_decimal(expected);
        failures++;
    }
    guest_puts("\n");
}

#define LIMIT 1000000u
static uint64_t composite[(LIMIT + 63) / 64]; /* bit n: n is composite */

static int is_composite(uint32_t n)
{
    return (int)((composite[n / 64] >> (n % 64)) & 1);
}

static void sieve(void)
{
    composite[0] |= 3; /* 0 and 1 */
    for (uint32_t i = 2; (uint64_t)i * i < LIMIT; i++)
        if (!is_composite(i))
            for (uint32_t j = i * i; j < LIMIT; j += i)
                composite[j / 64] |= 1ull << (j % 64);
}

static int trial_division(uint64_t n)
{
    if (n < 2)
        return 0;
    if (n % 2 == 0)
        return n == 2;
    for (uint64_t d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return 0;
    return 1;
}

static uint64_t mul_mod(uint64_t a, uint64_t b, uint64_t m)
{
    return (uint64_t)((unsigned __int128)a * b % m);
}

static uint64_t pow_mod(uint64_t base, uint64_t exponent, uint64_t m)
{
    uint64_t result = 1;
    base %= m;
    while (exponent) {
        if (exponent & 1)
            result = mul_mod(result, base, m);
        base = mul_mod(base, base, m);
        exponent >>= 1;
    }
    return result;
}

/* Deterministic for all 64-bit n with these bases. */
static int miller_rabin(uint64_t n)
{
    static const uint64_t bases[] = { 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37 };
    if (n < 2)
        return 0;
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        if (n == bases[i])
            return 1;
        if (n % bases[i] == 0)
            return 0;
    }
    uint64_t d = n - 1;
    int s = 0;
    while ((d & 1) == 0) {
        d >>= 1;
        s++;
    }
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        uint64_t x = pow_mod(bases[i], d, n);
        if (x == 1 || x == n - 1)
            continue;
        int witness = 1;
        for (int r = 1; r < s; r++) {
            x = mul_mod(x, x, n);
            if (x == n - 1) {
                witness = 0;
                break;
            }
        }
        if (witness)
            return 0;
    }
    return 1;
}

int main(void)
{
    guest_puts("primes: sieve\n");
    sieve();
    uint64_t count = 0, sum = 0, last = 0, nth10001 = 0, twin = 0, max_gap = 0;
    for (uint32_t n = 2; n < LIMIT; n++) {
        if (is_composite(n))
            continue;
        count++;
        sum += n;
        if (count == 10001)
            nth10001 = n;
        if (last && n - last == 2)
            twin++;
        if (last && n - last > max_gap)
            max_gap = n - last;
        last = n;
    }
    expect("primes below 10^6", count, 78498);
    expect("their sum", sum, 37550402023ull);
    expect("largest", last, 999983);
    expect("10001st prime", nth10001, 104743);
    expect("twin prime pairs", twin, 8169);
    expect("largest gap", max_gap, 114);

    guest_puts("primes: trial division agrees with the sieve\n");
    uint64_t disagreements = 0;
    for (uint32_t n = 0; n < 20000; n++)
        if (trial_division(n) != !is_composite(n))
            disagreements++;
    for (uint32_t n = LIMIT - 3000; n < LIMIT; n++)
        if (trial_division(n) != !is_composite(n))
            disagreements++;
    expect("disagreements", disagreements, 0);

    guest_puts("primes: Miller-Rabin\n");
    disagreements = 0;
    for (uint32_t n = 0; n < 30000; n++)
        if (miller_rabin(n) != !is_composite(n))
            disagreements++;
    expect("disagreements with the sieve", disagreements, 0);
    expect("2^61-1 prime", (uint64_t)miller_rabin(2305843009213693951ull), 1);
    expect("2^64-59 prime", (uint64_t)miller_rabin(18446744073709551557ull), 1);
    expect("2^64-1 prime", (uint64_t)miller_rabin(18446744073709551615ull), 0);
    expect("spsp(2,3,5,7) 3215031751 prime", (uint64_t)miller_rabin(3215031751ull), 0);
    expect("strong pseudoprime 3825123056546413051 prime", (uint64_t)miller_rabin(3825123056546413051ull), 0);
    expect("1000000007 * 998244353 prime", (uint64_t)miller_rabin(1000000007ull * 998244353ull), 0);
    uint64_t below = 0;
    for (uint64_t n = 18446744073709551615ull; n > 18446744073709551615ull - 2000; n--)
        below += (uint64_t)miller_rabin(n);
    expect("primes in the top 2000 of 64 bits", below, 46);
    expect("pow_mod(3, 10^18, 10^9+7)", pow_mod(3, 1000000000000000000ull, 1000000007), 246336683);

    guest_puts("primes: ");
    guest_put_decimal((uint64_t)failures);
    guest_puts(" failures\n");
    return failures;
}
