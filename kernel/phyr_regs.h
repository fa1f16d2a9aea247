/* SPDX-License-Identifier: GPL-2.0 */
/*
 * phyr endpoint registers and descriptors, from docs/ABI.md (one place).
 */
#ifndef _PHYR_REGS_H
#define _PHYR_REGS_H

#include <linux/types.h>

#define PHYR_PCI_VENDOR		0x1234
#define PHYR_PCI_DEVICE		0x7068

#define PHYR_BAR_REGS		0
#define PHYR_BAR_MEM		2

/* BAR0 registers (ABI section 2) */
#define PHYR_REG_ID		0x000	/* "PHYR" */
#define PHYR_REG_VERSION	0x004
#define PHYR_REG_NUM_QUEUES	0x008
#define PHYR_REG_MAX_Q_ENTRIES	0x00c
#define PHYR_REG_ENDPOINT_ID	0x010
#define PHYR_REG_SWITCH_ID	0x014
#define PHYR_REG_BAR2_SIZE	0x018	/* u64 */
#define PHYR_REG_MAX_LIST	0x020
#define PHYR_REG_MAX_CHAIN	0x024
#define PHYR_REG_CTRL		0x028
#define PHYR_REG_STATUS		0x02c
#define PHYR_REG_COMPLETED	0x030	/* u64 */
#define PHYR_REG_FAILED		0x038	/* u64 */
#define PHYR_REG_SCRATCH	0x040
#define PHYR_REG_IRQ_TEST	0x044
#define PHYR_REG_GUEST_ERRORS	0x048	/* ABI 1.1 */

#define PHYR_ID_VALUE		0x52594850
#define PHYR_VERSION_MAJOR(v)	((v) >> 16)

#define PHYR_CTRL_ENABLE	BIT(0)
#define PHYR_CTRL_RESET		BIT(1)

/* Queue q: register block at 0x100 + q * 0x40 */
#define PHYR_Q_BASE(q)		(0x100 + (q) * 0x40)
#define PHYR_Q_SQ_BASE		0x00	/* u64 */
#define PHYR_Q_CQ_BASE		0x08	/* u64 */
#define PHYR_Q_SQ_SIZE		0x10
#define PHYR_Q_CQ_SIZE		0x14
#define PHYR_Q_CTRL		0x18
#define PHYR_Q_STATUS		0x1c
#define PHYR_Q_SHADOW_BASE	0x20	/* u64 */
#define PHYR_Q_MSIX_VECTOR	0x28
#define PHYR_Q_SQ_HEAD		0x2c
#define PHYR_Q_CQ_TAIL		0x30

#define PHYR_Q_CTRL_ENABLE	BIT(0)
#define PHYR_Q_CTRL_IRQ		BIT(1)
#define PHYR_Q_CTRL_POLL	BIT(2)

#define PHYR_Q_STATUS_ENABLED	BIT(0)
#define PHYR_Q_STATUS_ERROR	BIT(1)
#define PHYR_Q_STATUS_CODE(s)	((s) >> 16)

/* Doorbells of queue q */
#define PHYR_DB_SQ_TAIL(q)	(0x1000 + (q) * 8)
#define PHYR_DB_CQ_HEAD(q)	(0x1004 + (q) * 8)

#define PHYR_MSIX_VECTORS	8
#define PHYR_MAX_Q_ENTRIES_MIN	2

/* Completion status codes used by the driver itself (ABI section 6) */
#define PHYR_STATUS_SUCCESS		0x00
#define PHYR_STATUS_ABORTED_RESET	0x40
#define PHYR_STATUS_ABORTED_QUEUE_DISABLED 0x41

/* A dma_range entry (ABI section 5) */
struct phyr_hw_range {
	__le64 addr;
	__le32 len;
	__le32 flags;
};

/* A command (ABI section 4), 64 bytes */
struct phyr_hw_cmd {
	u8 opcode;
	u8 flags;
	__le16 command_id;
	__le32 reserved0;
	struct phyr_hw_range src;
	struct phyr_hw_range dst;
	__le64 pattern;
	__le64 reserved1;
	__le64 reserved2;
};

/* A completion (ABI section 6), 32 bytes */
struct phyr_hw_cqe {
	__le16 command_id;
	__le16 status;
	__le16 sq_head;
	u8 fault_list;
	u8 phase;
	__le32 segment;
	__le32 reserved;
	__le64 result;
	__le64 fault_addr;
};

#endif /* _PHYR_REGS_H */
