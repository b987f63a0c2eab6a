/* PLIC (platform-level interrupt controller) at 0x0c000000, as on QEMU
 * virt: sources 1..95, two contexts for hart 0 (0 = M-mode -> mip.MEIP,
 * 1 = S-mode -> mip.SEIP). Level-triggered gateways: a source whose line is
 * high becomes pending when it is not being served; completing it makes it
 * pending again if the line is still high.
 *
 * Register map (offsets): priority[source] at 0x000000 + 4*source (3 bits),
 * pending bits at 0x001000 (read-only), enable bits of context c at
 * 0x002000 + 0x80*c, threshold of context c at 0x200000 + 0x1000*c,
 * claim/complete of context c at 0x200004 + 0x1000*c. 32-bit accesses. */
#ifndef COLO_MACHINE_PLIC_H
#define COLO_MACHINE_PLIC_H

#include <stdbool.h>
#include <stdint.h>

#include "state_buffer.h"

#define PLIC_SOURCE_COUNT 96 /* source 0 does not exist */
#define PLIC_WORDS (PLIC_SOURCE_COUNT / 32)
#define PLIC_CONTEXT_COUNT 2
#define PLIC_SIZE 0x600000ull

struct plic_state {
    uint32_t priority[PLIC_SOURCE_COUNT];
    uint32_t pending[PLIC_WORDS];
    uint32_t in_service[PLIC_WORDS]; /* claimed, not yet completed */
    uint32_t line_level[PLIC_WORDS]; /* the devices' interrupt lines */
    uint32_t enable[PLIC_CONTEXT_COUNT][PLIC_WORDS];
    uint32_t threshold[PLIC_CONTEXT_COUNT];
};

struct machine;

struct plic {
    struct plic_state state;
    struct machine *machine;
};

void plic_init(struct plic *plic, struct machine *machine);
bool plic_read(struct plic *plic, uint64_t offset, unsigned size, uint64_t *value);
bool plic_write(struct plic *plic, uint64_t offset, unsigned size, uint64_t value);
/* Devices drive their line (source 1..95) high or low. */
void plic_set_line(struct plic *plic, unsigned source, bool high);
/* Whether context has an enabled, pending source above its threshold.
 * After any change, the PLIC calls machine_set_external_interrupt(machine,
 * context, plic_context_interrupting(plic, context)) for each context. */
bool plic_context_interrupting(const struct plic *plic, unsigned context);
void plic_save(const struct plic *plic, struct state_writer *writer);
void plic_load(struct plic *plic, struct state_reader *reader);

#endif
