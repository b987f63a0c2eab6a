// Memory churner: dirties a chosen number of distinct 4 KiB pages per
// second, so that tests control the VM's dirty-page rate (what a COLO
// checkpoint has to copy).
//
// The rate lives in shared memory (struct churn_control, mapped by init
// before the fork): colo.churn= on the kernel command line sets it at boot,
// the KV store's CHURN command changes it at run time, and this loop reads
// it on every tick.
//
// The work is spread evenly over CHURN_TICKS_PER_SECOND ticks rather than
// done in a burst once a second, so a checkpoint taken at any moment sees
// about rate × interval dirty pages. Pages are written in order through a
// ring buffer, so the pages of one second are distinct as long as the rate
// is below the buffer's size in pages.
#include "guest.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>
#include <time.h>

#define CHURN_TICKS_PER_SECOND 100
#define CHURN_PAGE_SIZE 4096u
// 64 MiB: enough distinct pages for 16384 pages/s (64 MiB/s) of dirtying.
#define CHURN_DEFAULT_BUFFER_PAGES 16384u

struct churn_buffer {
    unsigned char *memory;
    size_t pages;
    size_t cursor;  // next page to write
};

// The buffer never takes more than half of the guest's RAM: past that the
// churner would push out the services it is meant to sit beside.
static size_t largest_buffer_pages(void) {
    struct sysinfo info;
    if (sysinfo(&info) != 0)
        return CHURN_DEFAULT_BUFFER_PAGES;
    uint64_t half_ram = (uint64_t)info.totalram * info.mem_unit / 2;
    return (size_t)(half_ram / CHURN_PAGE_SIZE);
}

// Maps a buffer of at least `pages` pages (at least the default, at most
// half the RAM). The pages are not touched here: an untouched anonymous page
// costs no memory until the churner first writes it.
static void size_buffer(struct churn_buffer *buffer, uint64_t pages_per_second) {
    size_t wanted = CHURN_DEFAULT_BUFFER_PAGES;
    if (pages_per_second > wanted)
        wanted = (size_t)pages_per_second;
    size_t largest = largest_buffer_pages();
    if (wanted > largest)
        wanted = largest;
    if (wanted == buffer->pages)
        return;
    if (buffer->memory != NULL)
        munmap(buffer->memory, buffer->pages * CHURN_PAGE_SIZE);
    buffer->memory = mmap(NULL, wanted * CHURN_PAGE_SIZE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffer->memory == MAP_FAILED) {
        guest_log("churn", "cannot map %zu pages: %s", wanted, strerror(errno));
        buffer->memory = NULL;
        buffer->pages = 0;
        return;
    }
    buffer->pages = wanted;
    buffer->cursor = 0;
}

static void add_nanoseconds(struct timespec *time, long nanoseconds) {
    time->tv_nsec += nanoseconds;
    while (time->tv_nsec >= 1000000000L) {
        time->tv_nsec -= 1000000000L;
        time->tv_sec++;
    }
}

void churn_main(int ready_fd, struct churn_control *churn) {
    prctl(PR_SET_NAME, "colo-churn");
    struct churn_buffer buffer = {0};
    uint64_t rate = atomic_load(&churn->pages_per_second);
    size_buffer(&buffer, rate);
    guest_log("churn", "%llu pages per second over a %zu-page buffer", (unsigned long long)rate,
              buffer.pages);
    signal_ready(ready_fd);

    const long tick_nanoseconds = 1000000000L / CHURN_TICKS_PER_SECOND;
    uint64_t stamp = 0;  // written into each page, so its content changes too
    unsigned tick_in_second = 0;
    struct timespec next_tick;
    clock_gettime(CLOCK_MONOTONIC, &next_tick);

    for (;;) {
        uint64_t new_rate = atomic_load(&churn->pages_per_second);
        if (new_rate != rate) {
            rate = new_rate;
            size_buffer(&buffer, rate);
            guest_log("churn", "%llu pages per second over a %zu-page buffer",
                      (unsigned long long)rate, buffer.pages);
        }

        // Pages due in this tick: the difference of the running totals, so a
        // rate that does not divide by the tick count still adds up exactly
        // to `rate` pages each second.
        uint64_t due = rate * (tick_in_second + 1) / CHURN_TICKS_PER_SECOND -
                       rate * tick_in_second / CHURN_TICKS_PER_SECOND;
        tick_in_second = (tick_in_second + 1) % CHURN_TICKS_PER_SECOND;
        for (uint64_t i = 0; i < due && buffer.pages > 0; i++) {
            volatile uint64_t *page = (volatile uint64_t *)(buffer.memory +
                                                            buffer.cursor * CHURN_PAGE_SIZE);
            *page = ++stamp;
            buffer.cursor = (buffer.cursor + 1) % buffer.pages;
        }

        // While idle, wake ten times less often: each wake-up dirties a few
        // kernel pages too, and an idle churner should dirty (almost) none.
        add_nanoseconds(&next_tick, rate == 0 ? 10 * tick_nanoseconds : tick_nanoseconds);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        // After a long stall (the VM was paused, or the rate is more than
        // the CPU can write) start again from now instead of bursting to
        // catch up.
        if (now.tv_sec > next_tick.tv_sec + 1)
            next_tick = now;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next_tick, NULL) == EINTR) {
        }
    }
}
