/* Instruction decoding: RVC expansion and the 32-bit decoder that fills a
 * decoded_instruction for the interpreter in hart.c. */
#ifndef COLO_MACHINE_HART_DECODE_H
#define COLO_MACHINE_HART_DECODE_H

#include <stdint.h>

#include "decode_cache.h"

/* Every operation the interpreter dispatches on. X(name) order is the
 * dispatch table order in hart.c. */
/* clang-format off */
#define HART_OPERATIONS(X) \
    X(DECODE) X(PAGE_END) X(CROSS_PAGE) X(ILLEGAL) \
    X(LUI) X(AUIPC) X(JAL) X(JALR) \
    X(BEQ) X(BNE) X(BLT) X(BGE) X(BLTU) X(BGEU) \
    X(LB) X(LH) X(LW) X(LD) X(LBU) X(LHU) X(LWU) \
    X(SB) X(SH) X(SW) X(SD) \
    X(ADDI) X(SLTI) X(SLTIU) X(XORI) X(ORI) X(ANDI) X(SLLI) X(SRLI) X(SRAI) \
    X(ADDIW) X(SLLIW) X(SRLIW) X(SRAIW) \
    X(ADD) X(SUB) X(SLL) X(SLT) X(SLTU) X(XOR) X(SRL) X(SRA) X(OR) X(AND) \
    X(ADDW) X(SUBW) X(SLLW) X(SRLW) X(SRAW) \
    X(MUL) X(MULH) X(MULHSU) X(MULHU) X(DIV) X(DIVU) X(REM) X(REMU) \
    X(MULW) X(DIVW) X(DIVUW) X(REMW) X(REMUW) \
    X(FENCE) X(FENCE_I) \
    X(ECALL) X(EBREAK) X(MRET) X(SRET) X(WFI) X(SFENCE_VMA) \
    X(CSRRW) X(CSRRS) X(CSRRC) X(CSRRWI) X(CSRRSI) X(CSRRCI) \
    X(ATOMIC) X(FLOATING_POINT)
/* clang-format on */

enum hart_operation {
#define HART_OPERATION_ENUM(name) HART_OP_##name,
    HART_OPERATIONS(HART_OPERATION_ENUM)
#undef HART_OPERATION_ENUM
        HART_OPERATION_COUNT
};

/* Expands a 16-bit compressed instruction into its 32-bit equivalent.
 * Returns 0 for an illegal or reserved encoding. */
uint32_t hart_expand_compressed(uint16_t parcel);

/* What the decoder finds; hart.c turns it into a decoded_instruction. */
struct hart_decoded_fields {
    uint16_t operation; /* enum hart_operation */
    uint8_t rd, rs1, rs2;
    uint8_t length;
    int32_t immediate; /* see struct decoded_instruction */
};

/* Decodes a 32-bit instruction (length is 2 when it came from RVC). Writes
 * to x0 are redirected to the sink register 32. Unknown encodings decode
 * as HART_OP_ILLEGAL with the original bits as the immediate. */
void hart_decode(uint32_t instruction, unsigned length, uint32_t original_bits, struct hart_decoded_fields *decoded);

#endif
