#include "hart_decode.h"

#include <string.h>

/* ---- Building 32-bit encodings (RVC expansion) ---- */

static uint32_t bits(uint32_t value, unsigned high, unsigned low)
{
    return (value >> low) & ((1u << (high - low + 1)) - 1);
}

static uint32_t encode_i(uint32_t opcode, uint32_t funct3, uint32_t rd, uint32_t rs1, int32_t immediate)
{
    return ((uint32_t)immediate << 20) | rs1 << 15 | funct3 << 12 | rd << 7 | opcode;
}

static uint32_t encode_s(uint32_t opcode, uint32_t funct3, uint32_t rs1, uint32_t rs2, int32_t immediate)
{
    uint32_t imm = (uint32_t)immediate;
    return bits(imm, 11, 5) << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 | bits(imm, 4, 0) << 7 | opcode;
}

static uint32_t encode_b(uint32_t funct3, uint32_t rs1, uint32_t rs2, int32_t offset)
{
    uint32_t imm = (uint32_t)offset;
    return bits(imm, 12, 12) << 31 | bits(imm, 10, 5) << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 |
           bits(imm, 4, 1) << 8 | bits(imm, 11, 11) << 7 | 0x63;
}

static uint32_t encode_j(uint32_t rd, int32_t offset)
{
    uint32_t imm = (uint32_t)offset;
    return bits(imm, 20, 20) << 31 | bits(imm, 10, 1) << 21 | bits(imm, 11, 11) << 20 | bits(imm, 19, 12) << 12 |
           rd << 7 | 0x6f;
}

static uint32_t encode_r(uint32_t opcode, uint32_t funct3, uint32_t funct7, uint32_t rd, uint32_t rs1, uint32_t rs2)
{
    return funct7 << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | opcode;
}

static int32_t sign_extend(uint32_t value, unsigned width)
{
    uint32_t shift = 32 - width;
    return (int32_t)(value << shift) >> shift;
}

/* clang-format off */
enum {
    OPCODE_LOAD = 0x03, OPCODE_LOAD_FP = 0x07, OPCODE_OP_IMM = 0x13, OPCODE_OP_IMM_32 = 0x1b,
    OPCODE_STORE = 0x23, OPCODE_STORE_FP = 0x27, OPCODE_OP = 0x33, OPCODE_LUI = 0x37,
    OPCODE_OP_32 = 0x3b, OPCODE_JALR = 0x67, OPCODE_SYSTEM = 0x73,
};

uint32_t hart_expand_compressed(uint16_t parcel)
{
    uint32_t c = parcel;
    uint32_t quadrant = c & 3;
    uint32_t funct3 = bits(c, 15, 13);
    uint32_t rd = bits(c, 11, 7);               /* also rs1 in full-register forms */
    uint32_t rs2 = bits(c, 6, 2);
    uint32_t rd_prime = bits(c, 4, 2) + 8;      /* rd'/rs2' */
    uint32_t rs1_prime = bits(c, 9, 7) + 8;

    if (quadrant == 0) {
        uint32_t offset_word = bits(c, 12, 10) << 3 | bits(c, 6, 6) << 2 | bits(c, 5, 5) << 6;
        uint32_t offset_double = bits(c, 12, 10) << 3 | bits(c, 6, 5) << 6;
        switch (funct3) {
        case 0: { /* C.ADDI4SPN */
            uint32_t imm = bits(c, 12, 11) << 4 | bits(c, 10, 7) << 6 | bits(c, 6, 6) << 2 | bits(c, 5, 5) << 3;
            if (imm == 0)
                return 0;
            return encode_i(OPCODE_OP_IMM, 0, rd_prime, 2, (int32_t)imm);
        }
        case 1: return encode_i(OPCODE_LOAD_FP, 3, rd_prime, rs1_prime, (int32_t)offset_double); /* C.FLD */
        case 2: return encode_i(OPCODE_LOAD, 2, rd_prime, rs1_prime, (int32_t)offset_word);       /* C.LW */
        case 3: return encode_i(OPCODE_LOAD, 3, rd_prime, rs1_prime, (int32_t)offset_double);     /* C.LD */
        case 5: return encode_s(OPCODE_STORE_FP, 3, rs1_prime, rd_prime, (int32_t)offset_double); /* C.FSD */
        case 6: return encode_s(OPCODE_STORE, 2, rs1_prime, rd_prime, (int32_t)offset_word);      /* C.SW */
        case 7: return encode_s(OPCODE_STORE, 3, rs1_prime, rd_prime, (int32_t)offset_double);    /* C.SD */
        default: return 0;
        }
    }

    if (quadrant == 1) {
        int32_t imm6 = sign_extend(bits(c, 12, 12) << 5 | bits(c, 6, 2), 6);
        switch (funct3) {
        case 0: return encode_i(OPCODE_OP_IMM, 0, rd, rd, imm6);       /* C.ADDI (C.NOP) */
        case 1:                                                         /* C.ADDIW */
            if (rd == 0)
                return 0;
            return encode_i(OPCODE_OP_IMM_32, 0, rd, rd, imm6);
        case 2: return encode_i(OPCODE_OP_IMM, 0, rd, 0, imm6);        /* C.LI */
        case 3:
            if (rd == 2) {                                              /* C.ADDI16SP */
                int32_t imm = sign_extend(bits(c, 12, 12) << 9 | bits(c, 6, 6) << 4 | bits(c, 5, 5) << 6 |
                                          bits(c, 4, 3) << 7 | bits(c, 2, 2) << 5, 10);
                if (imm == 0)
                    return 0;
                return encode_i(OPCODE_OP_IMM, 0, 2, 2, imm);
            }
            if (imm6 == 0)                                              /* C.LUI */
                return 0;
            return ((uint32_t)imm6 << 12) | rd << 7 | OPCODE_LUI;
        case 4: {
            uint32_t shift = bits(c, 12, 12) << 5 | bits(c, 6, 2);
            switch (bits(c, 11, 10)) {
            case 0: return encode_i(OPCODE_OP_IMM, 5, rs1_prime, rs1_prime, (int32_t)shift);           /* C.SRLI */
            case 1: return encode_i(OPCODE_OP_IMM, 5, rs1_prime, rs1_prime, (int32_t)(shift | 0x400)); /* C.SRAI */
            case 2: return encode_i(OPCODE_OP_IMM, 7, rs1_prime, rs1_prime, imm6);                     /* C.ANDI */
            default: {
                static const uint8_t funct3_of[4] = { 0, 4, 6, 7 };     /* SUB XOR OR AND */
                uint32_t which = bits(c, 6, 5);
                if (bits(c, 12, 12) == 0)
                    return encode_r(OPCODE_OP, funct3_of[which], which == 0 ? 0x20 : 0,
                                    rs1_prime, rs1_prime, rd_prime);
                if (which == 0)                                         /* C.SUBW */
                    return encode_r(OPCODE_OP_32, 0, 0x20, rs1_prime, rs1_prime, rd_prime);
                if (which == 1)                                         /* C.ADDW */
                    return encode_r(OPCODE_OP_32, 0, 0, rs1_prime, rs1_prime, rd_prime);
                return 0;
            }
            }
        }
        case 5: {                                                       /* C.J */
            int32_t offset = sign_extend(bits(c, 12, 12) << 11 | bits(c, 11, 11) << 4 | bits(c, 10, 9) << 8 |
                                         bits(c, 8, 8) << 10 | bits(c, 7, 7) << 6 | bits(c, 6, 6) << 7 |
                                         bits(c, 5, 3) << 1 | bits(c, 2, 2) << 5, 12);
            return encode_j(0, offset);
        }
        default: {                                                      /* C.BEQZ, C.BNEZ */
            int32_t offset = sign_extend(bits(c, 12, 12) << 8 | bits(c, 11, 10) << 3 | bits(c, 6, 5) << 6 |
                                         bits(c, 4, 3) << 1 | bits(c, 2, 2) << 5, 9);
            return encode_b(funct3 == 6 ? 0 : 1, rs1_prime, 0, offset);
        }
        }
    }

    if (quadrant == 2) {
        switch (funct3) {
        case 0: {                                                       /* C.SLLI */
            uint32_t shift = bits(c, 12, 12) << 5 | bits(c, 6, 2);
            return encode_i(OPCODE_OP_IMM, 1, rd, rd, (int32_t)shift);
        }
        case 1: {                                                       /* C.FLDSP */
            uint32_t offset = bits(c, 12, 12) << 5 | bits(c, 6, 5) << 3 | bits(c, 4, 2) << 6;
            return encode_i(OPCODE_LOAD_FP, 3, rd, 2, (int32_t)offset);
        }
        case 2: {                                                       /* C.LWSP */
            uint32_t offset = bits(c, 12, 12) << 5 | bits(c, 6, 4) << 2 | bits(c, 3, 2) << 6;
            if (rd == 0)
                return 0;
            return encode_i(OPCODE_LOAD, 2, rd, 2, (int32_t)offset);
        }
        case 3: {                                                       /* C.LDSP */
            uint32_t offset = bits(c, 12, 12) << 5 | bits(c, 6, 5) << 3 | bits(c, 4, 2) << 6;
            if (rd == 0)
                return 0;
            return encode_i(OPCODE_LOAD, 3, rd, 2, (int32_t)offset);
        }
        case 4:
            if (bits(c, 12, 12) == 0) {
                if (rs2 == 0) {                                         /* C.JR */
                    if (rd == 0)
                        return 0;
                    return encode_i(OPCODE_JALR, 0, 0, rd, 0);
                }
                return encode_r(OPCODE_OP, 0, 0, rd, 0, rs2);           /* C.MV */
            }
            if (rs2 == 0) {
                if (rd == 0)
                    return 0x00100073;                                  /* C.EBREAK */
                return encode_i(OPCODE_JALR, 0, 1, rd, 0);              /* C.JALR */
            }
            return encode_r(OPCODE_OP, 0, 0, rd, rd, rs2);              /* C.ADD */
        case 5: {                                                       /* C.FSDSP */
            uint32_t offset = bits(c, 12, 10) << 3 | bits(c, 9, 7) << 6;
            return encode_s(OPCODE_STORE_FP, 3, 2, rs2, (int32_t)offset);
        }
        case 6: {                                                       /* C.SWSP */
            uint32_t offset = bits(c, 12, 9) << 2 | bits(c, 8, 7) << 6;
            return encode_s(OPCODE_STORE, 2, 2, rs2, (int32_t)offset);
        }
        default: {                                                      /* C.SDSP */
            uint32_t offset = bits(c, 12, 10) << 3 | bits(c, 9, 7) << 6;
            return encode_s(OPCODE_STORE, 3, 2, rs2, (int32_t)offset);
        }
        }
    }
    return 0;
}

/* ---- The 32-bit decoder ---- */

static void set(struct hart_decoded_fields *d, enum hart_operation operation, uint32_t rd,
                uint32_t rs1, uint32_t rs2, int32_t immediate)
{
    d->operation = (uint16_t)operation;
    d->rd = (uint8_t)(rd == 0 ? 32 : rd);   /* writes to x0 land in the sink */
    d->rs1 = (uint8_t)rs1;
    d->rs2 = (uint8_t)rs2;
    d->immediate = immediate;
}

void hart_decode(uint32_t instruction, unsigned length, uint32_t original_bits,
                 struct hart_decoded_fields *d)
{
    memset(d, 0, sizeof *d);
    d->length = (uint8_t)length;
    int32_t raw = (int32_t)instruction;
    uint32_t opcode = instruction & 0x7f;
    uint32_t rd = bits(instruction, 11, 7);
    uint32_t funct3 = bits(instruction, 14, 12);
    uint32_t rs1 = bits(instruction, 19, 15);
    uint32_t rs2 = bits(instruction, 24, 20);
    uint32_t funct7 = bits(instruction, 31, 25);
    int32_t imm_i = (int32_t)instruction >> 20;
    int32_t imm_s = ((int32_t)instruction >> 25) * 32 + (int32_t)bits(instruction, 11, 7);
    int32_t imm_b = sign_extend(bits(instruction, 31, 31) << 12 | bits(instruction, 7, 7) << 11 |
                                bits(instruction, 30, 25) << 5 | bits(instruction, 11, 8) << 1, 13);
    int32_t imm_u = (int32_t)(instruction & 0xfffff000u);
    int32_t imm_j = sign_extend(bits(instruction, 31, 31) << 20 | bits(instruction, 19, 12) << 12 |
                                bits(instruction, 20, 20) << 11 | bits(instruction, 30, 21) << 1, 21);
    enum hart_operation op = HART_OP_ILLEGAL;

    if ((instruction & 3) != 3)
        goto illegal;

    switch (opcode) {
    case 0x37: set(d, HART_OP_LUI, rd, 0, 0, imm_u); return;
    case 0x17: set(d, HART_OP_AUIPC, rd, 0, 0, imm_u); return;
    case 0x6f: set(d, HART_OP_JAL, rd, 0, 0, imm_j); return;
    case 0x67:
        if (funct3 != 0)
            goto illegal;
        set(d, HART_OP_JALR, rd, rs1, 0, imm_i);
        return;
    case 0x63: {
        static const enum hart_operation branches[8] = {
            HART_OP_BEQ, HART_OP_BNE, HART_OP_ILLEGAL, HART_OP_ILLEGAL,
            HART_OP_BLT, HART_OP_BGE, HART_OP_BLTU, HART_OP_BGEU };
        op = branches[funct3];
        if (op == HART_OP_ILLEGAL)
            goto illegal;
        set(d, op, 0, rs1, rs2, imm_b);
        return;
    }
    case 0x03: {
        static const enum hart_operation loads[8] = {
            HART_OP_LB, HART_OP_LH, HART_OP_LW, HART_OP_LD,
            HART_OP_LBU, HART_OP_LHU, HART_OP_LWU, HART_OP_ILLEGAL };
        op = loads[funct3];
        if (op == HART_OP_ILLEGAL)
            goto illegal;
        set(d, op, rd, rs1, 0, imm_i);
        return;
    }
    case 0x23: {
        static const enum hart_operation stores[8] = {
            HART_OP_SB, HART_OP_SH, HART_OP_SW, HART_OP_SD,
            HART_OP_ILLEGAL, HART_OP_ILLEGAL, HART_OP_ILLEGAL, HART_OP_ILLEGAL };
        op = stores[funct3];
        if (op == HART_OP_ILLEGAL)
            goto illegal;
        set(d, op, 0, rs1, rs2, imm_s);
        return;
    }
    case 0x13: {
        uint32_t shift_kind = bits(instruction, 31, 26);
        int32_t shift = (int32_t)bits(instruction, 25, 20);
        switch (funct3) {
        case 0: op = HART_OP_ADDI; break;
        case 2: op = HART_OP_SLTI; break;
        case 3: op = HART_OP_SLTIU; break;
        case 4: op = HART_OP_XORI; break;
        case 6: op = HART_OP_ORI; break;
        case 7: op = HART_OP_ANDI; break;
        case 1:
            if (shift_kind != 0)
                goto illegal;
            set(d, HART_OP_SLLI, rd, rs1, 0, shift);
            return;
        default:
            if (shift_kind == 0)
                set(d, HART_OP_SRLI, rd, rs1, 0, shift);
            else if (shift_kind == 0x10)
                set(d, HART_OP_SRAI, rd, rs1, 0, shift);
            else
                goto illegal;
            return;
        }
        set(d, op, rd, rs1, 0, imm_i);
        return;
    }
    case 0x1b: {
        int32_t shift = (int32_t)rs2;
        if (funct3 == 0)
            set(d, HART_OP_ADDIW, rd, rs1, 0, imm_i);
        else if (funct3 == 1 && funct7 == 0)
            set(d, HART_OP_SLLIW, rd, rs1, 0, shift);
        else if (funct3 == 5 && funct7 == 0)
            set(d, HART_OP_SRLIW, rd, rs1, 0, shift);
        else if (funct3 == 5 && funct7 == 0x20)
            set(d, HART_OP_SRAIW, rd, rs1, 0, shift);
        else
            goto illegal;
        return;
    }
    case 0x33: {
        static const enum hart_operation base[8] = {
            HART_OP_ADD, HART_OP_SLL, HART_OP_SLT, HART_OP_SLTU,
            HART_OP_XOR, HART_OP_SRL, HART_OP_OR, HART_OP_AND };
        static const enum hart_operation multiply[8] = {
            HART_OP_MUL, HART_OP_MULH, HART_OP_MULHSU, HART_OP_MULHU,
            HART_OP_DIV, HART_OP_DIVU, HART_OP_REM, HART_OP_REMU };
        if (funct7 == 0)
            op = base[funct3];
        else if (funct7 == 1)
            op = multiply[funct3];
        else if (funct7 == 0x20 && funct3 == 0)
            op = HART_OP_SUB;
        else if (funct7 == 0x20 && funct3 == 5)
            op = HART_OP_SRA;
        else
            goto illegal;
        set(d, op, rd, rs1, rs2, 0);
        return;
    }
    case 0x3b: {
        if (funct7 == 0 && funct3 == 0) op = HART_OP_ADDW;
        else if (funct7 == 0 && funct3 == 1) op = HART_OP_SLLW;
        else if (funct7 == 0 && funct3 == 5) op = HART_OP_SRLW;
        else if (funct7 == 0x20 && funct3 == 0) op = HART_OP_SUBW;
        else if (funct7 == 0x20 && funct3 == 5) op = HART_OP_SRAW;
        else if (funct7 == 1 && funct3 == 0) op = HART_OP_MULW;
        else if (funct7 == 1 && funct3 == 4) op = HART_OP_DIVW;
        else if (funct7 == 1 && funct3 == 5) op = HART_OP_DIVUW;
        else if (funct7 == 1 && funct3 == 6) op = HART_OP_REMW;
        else if (funct7 == 1 && funct3 == 7) op = HART_OP_REMUW;
        else goto illegal;
        set(d, op, rd, rs1, rs2, 0);
        return;
    }
    case 0x0f:
        if (funct3 == 0)
            set(d, HART_OP_FENCE, 0, 0, 0, 0);
        else if (funct3 == 1)
            set(d, HART_OP_FENCE_I, 0, 0, 0, 0);
        else
            goto illegal;
        return;
    case 0x73:
        if (funct3 == 0) {
            if (instruction == 0x00000073) op = HART_OP_ECALL;
            else if (instruction == 0x00100073) op = HART_OP_EBREAK;
            else if (instruction == 0x30200073) op = HART_OP_MRET;
            else if (instruction == 0x10200073) op = HART_OP_SRET;
            else if (instruction == 0x10500073) op = HART_OP_WFI;
            else if (funct7 == 0x09 && rd == 0) op = HART_OP_SFENCE_VMA;
            else goto illegal;
            set(d, op, 0, rs1, rs2, raw);
            return;
        } else {
            static const enum hart_operation csr[8] = {
                HART_OP_ILLEGAL, HART_OP_CSRRW, HART_OP_CSRRS, HART_OP_CSRRC,
                HART_OP_ILLEGAL, HART_OP_CSRRWI, HART_OP_CSRRSI, HART_OP_CSRRCI };
            op = csr[funct3];
            if (op == HART_OP_ILLEGAL)
                goto illegal;
            /* rs1 is the register or the 5-bit immediate; the CSR number
             * is the top 12 bits of the raw instruction */
            set(d, op, rd, rs1, 0, raw);
            return;
        }
    case 0x2f:
        if (funct3 != 2 && funct3 != 3)
            goto illegal;
        set(d, HART_OP_ATOMIC, rd, rs1, rs2, raw);
        return;
    case 0x07: case 0x27: case 0x43: case 0x47: case 0x4b: case 0x4f: case 0x53:
        set(d, HART_OP_FLOATING_POINT, 0, 0, 0, raw);
        return;
    default:
        break;
    }
illegal:
    d->operation = HART_OP_ILLEGAL;
    d->immediate = (int32_t)original_bits;
}
/* clang-format on */
