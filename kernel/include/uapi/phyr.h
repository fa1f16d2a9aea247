/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * phyr guest kernel driver: user interface of /dev/phyr.
 *
 * Userspace allocates buffers (RAM pages, p2pmem or a window of an
 * endpoint's BAR2), maps sets of them for one executing endpoint through
 * one DMA API path, reads back the dma_range list the kernel produced,
 * submits commands over such lists and gets the device's completion.
 * docs/KERNEL-UAPI.md describes every call, field and error.
 *
 * Every struct has a fixed size and explicit padding; reserved fields and
 * flags must be zero on input. PHYR_UAPI_VERSION (PHYR_IOC_INFO) changes its
 * major number on incompatible changes; new calls get new ioctl numbers.
 */
#ifndef _UAPI_LINUX_PHYR_H
#define _UAPI_LINUX_PHYR_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define PHYR_UAPI_VERSION	0x00010000	/* major << 16 | minor */

#define PHYR_MAX_ENDPOINTS	32	/* endpoints one driver instance serves */
#define PHYR_MAX_QUEUES		8	/* queues per endpoint the driver uses */
#define PHYR_MAX_MAP_SEGS	8192	/* input segments of one map */
#define PHYR_MAX_PIECES		65536	/* physical pieces of one map */
#define PHYR_MAX_RANGE_LEN	0xfffff000u /* longest dma_range a map produces */

/* phyr_info.caps: what this build and kernel offer */
#define PHYR_CAP_P2PDMA		(1u << 0)  /* CONFIG_PCI_P2PDMA: BAR2s are p2pmem */
#define PHYR_CAP_PATH_SGTABLE	(1u << 1)  /* PHYR_PATH_SGTABLE */
#define PHYR_CAP_PATH_IOVA	(1u << 2)  /* PHYR_PATH_IOVA */
#define PHYR_CAP_PATH_PHYS	(1u << 3)  /* PHYR_PATH_PHYS */
#define PHYR_CAP_PATH_RESOURCE	(1u << 4)  /* PHYR_PATH_RESOURCE */
#define PHYR_CAP_P2PDMA_STATE	(1u << 5)  /* pci_p2pdma_state() is callable */

/* DMA API paths (phyr_map.path); PHYR_CAP_PATH_* = 1 << path */
#define PHYR_PATH_SGTABLE	1  /* dma_map_sgtable() */
#define PHYR_PATH_IOVA		2  /* dma_iova_try_alloc/link/sync/destroy */
#define PHYR_PATH_PHYS		3  /* dma_map_phys(), DMA_ATTR_MMIO for peers */
#define PHYR_PATH_RESOURCE	4  /* dma_map_page() + dma_map_resource() */

/* Buffer kinds (phyr_buf_alloc.kind) */
#define PHYR_BUF_RAM		1  /* physically contiguous RAM pages */
#define PHYR_BUF_RAM_SCATTER	2  /* RAM pages, no two consecutive adjacent */
#define PHYR_BUF_P2PMEM		3  /* pci_alloc_p2pmem() of an endpoint */
#define PHYR_BUF_BAR		4  /* raw window of an endpoint's BAR2 */

/* DMA directions (phyr_map.dir), as enum dma_data_direction */
#define PHYR_DIR_BIDIRECTIONAL	0
#define PHYR_DIR_TO_DEVICE	1  /* the device reads: IOMMU maps read-only */
#define PHYR_DIR_FROM_DEVICE	2  /* the device writes */

/* The route a piece takes (phyr_piece.map_type, phyr_p2p_query.map_type) */
#define PHYR_MAP_NONE		1  /* RAM: not peer-to-peer */
#define PHYR_MAP_NOT_SUPPORTED	2  /* peer unreachable: mapping fails */
#define PHYR_MAP_BUS_ADDR	3  /* PCI bus address, through the switch */
#define PHYR_MAP_THRU_HOST_BRIDGE 4 /* IOVA or CPU address, via the root */

/* The kernel call that produced a piece's address (phyr_piece.how) */
#define PHYR_HOW_SGTABLE	1  /* dma_map_sgtable() */
#define PHYR_HOW_IOVA_LINK	2  /* dma_iova_link() into one IOVA range */
#define PHYR_HOW_BUS_ADDR_MAP	3  /* pci_p2pdma_bus_addr_map() */
#define PHYR_HOW_MAP_PHYS	4  /* dma_map_phys() */
#define PHYR_HOW_MAP_PAGE	5  /* dma_map_page_attrs() */
#define PHYR_HOW_MAP_RESOURCE	6  /* dma_map_resource() */

/* phyr_piece.flags */
#define PHYR_PIECE_FALLBACK	(1u << 0)  /* dma_iova_try_alloc() failed */

/* How a p2p decision was obtained (phyr_p2p_query.source) */
#define PHYR_DECIDED_BY_STATE	1  /* pci_p2pdma_state() */
#define PHYR_DECIDED_BY_SG_PROBE 2 /* dma_map_sgtable() of one page */

/* dma_range flags, as in docs/ABI.md */
#define PHYR_RANGE_BUS_ADDR	(1u << 0)
#define PHYR_RANGE_CHAIN	(1u << 1)

/* Device opcodes (phyr_submit.opcode) */
#define PHYR_OP_NOP		0
#define PHYR_OP_COPY		1
#define PHYR_OP_FILL		2
#define PHYR_OP_CRC32C		3
#define PHYR_OP_COMPARE		4

/* phyr_submit.flags */
#define PHYR_SUBMIT_STALE	(1u << 0)  /* allow maps unmapped with KEEP */

/* phyr_submit.out_flags */
#define PHYR_SUBMIT_TIMED_OUT	(1u << 0)  /* the driver stopped the queue */

/* phyr_unmap.flags */
#define PHYR_UNMAP_KEEP		(1u << 0)  /* keep the map id and ranges */

/* phyr_ep_info.flags */
#define PHYR_EP_P2PMEM		(1u << 0)  /* BAR2 registered as p2pmem */
#define PHYR_EP_PUBLISHED	(1u << 1)  /* ... and published */

/* phyr_queue_info.flags */
#define PHYR_QUEUE_POLLED	(1u << 0)  /* no interrupt: shadow doorbells, polled CQ */

struct phyr_info {
	__u32 uapi_version;	/* out: PHYR_UAPI_VERSION */
	__u32 caps;		/* out: PHYR_CAP_* */
	__u32 kernel_version;	/* out: LINUX_VERSION_CODE built against */
	__u32 page_size;	/* out: PAGE_SIZE */
	__u32 nr_endpoints;	/* out */
	__u32 reserved;
	__u32 endpoints[PHYR_MAX_ENDPOINTS]; /* out: ENDPOINT_ID, ascending */
};

struct phyr_queue_info {
	__u64 sq_dma;		/* IOVA of the submission ring */
	__u64 cq_dma;		/* IOVA of the completion ring */
	__u64 shadow_dma;	/* IOVA of the shadow doorbells (polled), or 0 */
	__u32 entries;		/* ring entries (SQ and CQ) */
	__u32 flags;		/* PHYR_QUEUE_* */
	__u32 vector;		/* MSI-X vector (interrupt queues) */
	__u32 reserved;
};

struct phyr_ep_info {
	__u32 ep;		/* in: endpoint id */
	__u32 flags;		/* out: PHYR_EP_* */
	__u32 pci_domain;	/* out */
	__u8 pci_bus;		/* out */
	__u8 pci_devfn;		/* out */
	__u16 reserved0;
	__u32 version;		/* out: VERSION register */
	__u32 switch_id;	/* out: SWITCH_ID register */
	__u32 max_list_entries;	/* out: MAX_LIST_ENTRIES */
	__u32 max_chain;	/* out: MAX_CHAIN */
	__u32 nr_queues;	/* out: queues the driver runs */
	__u32 reserved1;
	__u64 bar2_phys;	/* out: CPU physical address of BAR2 */
	__u64 bar2_bus;		/* out: PCI bus address of BAR2 */
	__u64 bar2_size;	/* out */
	struct phyr_queue_info queues[PHYR_MAX_QUEUES]; /* out */
};

struct phyr_p2p_query {
	__u32 provider;		/* in: endpoint whose BAR2 is read/written */
	__u32 client;		/* in: endpoint that would do the DMA */
	__s32 distance;		/* out: pci_p2pdma_distance(), -1: unsupported */
	__u32 map_type;		/* out: PHYR_MAP_* the kernel decides */
	__u32 source;		/* out: PHYR_DECIDED_BY_* */
	__u32 reserved;
};

struct phyr_buf_alloc {
	__u32 kind;		/* in: PHYR_BUF_* */
	__u32 ep;		/* in: provider (P2PMEM, BAR), else 0 */
	__u64 len;		/* in: bytes, >= 1 */
	__u64 bar_offset;	/* in: BAR: page-aligned offset; out: P2PMEM, BAR */
	__u32 flags;		/* in: 0 */
	__u32 buf;		/* out: buffer id, >= 1 */
	__u64 phys;		/* out: CPU physical address of byte 0 */
	__u32 nr_chunks;	/* out: physically contiguous chunks */
	__u32 reserved;
};

struct phyr_buf_free {
	__u32 buf;		/* in */
	__u32 reserved;
};

struct phyr_buf_io {
	__u32 buf;		/* in */
	__u32 flags;		/* in: 0 */
	__u64 offset;		/* in: byte offset in the buffer */
	__u64 len;		/* in: bytes */
	__u64 data;		/* in: user pointer to len bytes */
};

struct phyr_map_seg {
	__u32 buf;		/* buffer id */
	__u32 reserved;
	__u64 offset;		/* byte offset in the buffer */
	__u64 len;		/* bytes, >= 1 */
};

struct phyr_dma_range {		/* as the device reads it (docs/ABI.md) */
	__u64 addr;
	__u32 len;
	__u32 flags;		/* PHYR_RANGE_* */
};

struct phyr_piece {		/* one physically contiguous piece of a map */
	__u64 dma_addr;		/* address the device uses for its first byte */
	__u64 phys;		/* CPU physical address of its first byte */
	__u64 buf_offset;	/* offset of its first byte in its buffer */
	__u32 len;		/* bytes */
	__u32 range;		/* index of the dma_range holding it */
	__u32 seg;		/* index of the input segment */
	__u8 map_type;		/* PHYR_MAP_* */
	__u8 how;		/* PHYR_HOW_* */
	__u16 flags;		/* PHYR_PIECE_* */
};

struct phyr_map {
	__u32 ep;		/* in: executing endpoint */
	__u32 path;		/* in: PHYR_PATH_* */
	__u32 dir;		/* in: PHYR_DIR_* */
	__u32 flags;		/* in: 0 */
	__u32 nr_segs;		/* in: 1 .. PHYR_MAX_MAP_SEGS */
	__u32 nr_ranges;	/* in: capacity of ranges; out: count */
	__u32 nr_pieces;	/* in: capacity of pieces; out: count */
	__u32 map;		/* out: map id, >= 1 */
	__u64 segs;		/* in: user pointer, struct phyr_map_seg[] */
	__u64 ranges;		/* in: user pointer, struct phyr_dma_range[] */
	__u64 pieces;		/* in: user pointer, struct phyr_piece[] */
	__u64 total_len;	/* out: bytes mapped */
};

struct phyr_unmap {
	__u32 map;		/* in */
	__u32 flags;		/* in: PHYR_UNMAP_* */
};

struct phyr_cqe {		/* the device's completion, as posted */
	__u16 command_id;
	__u16 status;
	__u16 sq_head;
	__u8 fault_list;
	__u8 phase;
	__u32 segment;
	__u32 reserved;
	__u64 result;
	__u64 fault_addr;
};

struct phyr_submit {
	__u32 ep;		/* in: executing endpoint */
	__u32 queue;		/* in: queue index */
	__u32 opcode;		/* in: PHYR_OP_* */
	__u32 flags;		/* in: PHYR_SUBMIT_* */
	__u32 src_map;		/* in: source map id, 0 = none */
	__u32 dst_map;		/* in: destination map id, 0 = none */
	__u32 block_entries;	/* in: data entries per list block, 0 = all */
	__u32 timeout_ms;	/* in: 0 = 10000 */
	__u64 pattern;		/* in: FILL pattern */
	__u64 src_head;		/* out: list head addr of the source list */
	__u64 dst_head;		/* out: ... of the destination list */
	__u64 list_dma;		/* out: IOVA of the memory holding both lists */
	__u32 list_bytes;	/* out: its size */
	__u32 out_flags;	/* out: PHYR_SUBMIT_TIMED_OUT */
	struct phyr_cqe cqe;	/* out */
};

struct phyr_reset {
	__u32 ep;		/* in */
	__u32 reserved;
};

#define PHYR_IOC_MAGIC		'P'
#define PHYR_IOC_INFO		_IOR(PHYR_IOC_MAGIC, 0x00, struct phyr_info)
#define PHYR_IOC_EP_INFO	_IOWR(PHYR_IOC_MAGIC, 0x01, struct phyr_ep_info)
#define PHYR_IOC_P2P_QUERY	_IOWR(PHYR_IOC_MAGIC, 0x02, struct phyr_p2p_query)
#define PHYR_IOC_BUF_ALLOC	_IOWR(PHYR_IOC_MAGIC, 0x10, struct phyr_buf_alloc)
#define PHYR_IOC_BUF_FREE	_IOW(PHYR_IOC_MAGIC, 0x11, struct phyr_buf_free)
#define PHYR_IOC_BUF_READ	_IOW(PHYR_IOC_MAGIC, 0x12, struct phyr_buf_io)
#define PHYR_IOC_BUF_WRITE	_IOW(PHYR_IOC_MAGIC, 0x13, struct phyr_buf_io)
#define PHYR_IOC_MAP		_IOWR(PHYR_IOC_MAGIC, 0x20, struct phyr_map)
#define PHYR_IOC_UNMAP		_IOW(PHYR_IOC_MAGIC, 0x21, struct phyr_unmap)
#define PHYR_IOC_SUBMIT		_IOWR(PHYR_IOC_MAGIC, 0x30, struct phyr_submit)
#define PHYR_IOC_RESET		_IOW(PHYR_IOC_MAGIC, 0x31, struct phyr_reset)

#endif /* _UAPI_LINUX_PHYR_H */
