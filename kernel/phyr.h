/* SPDX-License-Identifier: GPL-2.0 */
/*
 * phyr guest kernel driver: shared definitions.
 *
 * Objects and their lifetimes:
 *
 *  - struct phyr_ep: one bound endpoint. Refcounted (kref); found by its
 *    ENDPOINT_ID in phyr_eps. An ioctl that uses an endpoint holds
 *    ep->users for reading and fails with -ENODEV once ep->gone is set.
 *    Removal sets gone, resets the device (aborting every command), waits
 *    for the readers, revokes every object that names the endpoint and waits
 *    until the last of them is released (ep->nr_objs).
 *
 *  - struct phyr_buf, struct phyr_mapping: owned by one open file (ids in its
 *    xarrays, under phyr_file.lock), refcounted. A map holds its buffers and
 *    its executing endpoint; a p2pmem or BAR buffer holds its provider; a
 *    running command holds its maps. Freeing an id drops the file's
 *    reference only: memory stays until the last user is gone.
 */
#ifndef _PHYR_H
#define _PHYR_H

#include <linux/dma-mapping.h>
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/rwsem.h>
#include <linux/scatterlist.h>
#include <linux/spinlock.h>
#include <linux/version.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "include/uapi/phyr.h"
#include "phyr_regs.h"

/*
 * Which DMA API this kernel offers. The IOVA API arrived in 6.16,
 * dma_map_phys() and DMA_ATTR_MMIO in 6.18, struct p2pdma_provider
 * (pcim_p2pdma_provider(), pci_p2pdma_bus_addr_map() on a provider) in 6.19.
 */
#define PHYR_HAVE_IOVA		(LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0))
#define PHYR_HAVE_MAP_PHYS	(LINUX_VERSION_CODE >= KERNEL_VERSION(6, 18, 0))
#define PHYR_HAVE_P2P_PROVIDER	(IS_ENABLED(CONFIG_PCI_P2PDMA) && \
				 LINUX_VERSION_CODE >= KERNEL_VERSION(6, 19, 0))

#define PHYR_DEFAULT_TIMEOUT_MS	10000
#define PHYR_MAX_TIMEOUT_MS	600000
#define PHYR_MAX_LIST_BLOCK	(PHYR_MAX_PIECES + 1)

struct phyr_ep;

/* A command waiting for its completion (lives on the submitter's stack) */
struct phyr_cmd {
	struct completion done;
	struct phyr_cqe cqe;
	int error;		/* 0: cqe is the device's; else why not */
	u16 cid;
};

struct phyr_queue {
	struct phyr_ep *ep;
	unsigned int index;
	bool polled;		/* shadow doorbells, CQ polled, no IRQ */
	unsigned int vector;

	spinlock_t lock;	/* everything below */
	bool running;
	u32 depth;		/* SQ and CQ entries */
	struct phyr_hw_cmd *sq;
	struct phyr_hw_cqe *cq;
	__le32 *shadow;		/* [0] SQ tail, [1] CQ head */
	dma_addr_t sq_dma, cq_dma, shadow_dma;
	u32 sq_tail, cq_head;
	u8 phase;
	u16 seq;
	unsigned int inflight;
	struct phyr_cmd **slots;
	wait_queue_head_t slot_wait;
};

struct phyr_ep {
	struct kref ref;
	struct pci_dev *pdev;
	void __iomem *regs;
	u32 id;
	u32 switch_id;
	u32 version;
	u32 max_list;
	u32 max_chain;
	u32 max_q_entries;
	u64 bar2_size;
	bool p2pmem;
	bool published;

	bool gone;			/* READ_ONCE: being removed */
	struct rw_semaphore users;	/* read: an ioctl uses the device */
	struct mutex ctrl_lock;		/* device reset, queue restart */
	atomic_t nr_objs;		/* maps for it, buffers from it */
	wait_queue_head_t objs_wait;

	unsigned int nr_vectors;
	unsigned int nr_queues;
	struct phyr_queue queues[PHYR_MAX_QUEUES];
};

/* Per open file */
struct phyr_file {
	struct list_head node;		/* in phyr_files */
	struct mutex lock;		/* bufs, maps, phyr_map.active */
	struct xarray bufs;
	struct xarray maps;
};

struct phyr_buf {
	struct kref ref;
	u32 kind;
	u64 len;
	struct phyr_ep *ep;		/* provider: P2PMEM, BAR */
	phys_addr_t phys;		/* byte 0 (RAM, P2PMEM, BAR) */
	u64 bar_offset;			/* P2PMEM, BAR */
	unsigned int nr_chunks;
	struct page *page;		/* RAM */
	unsigned int order;		/* RAM */
	struct page **pages;		/* RAM_SCATTER */
	unsigned long nr_pages;		/* RAM_SCATTER */
	void *kaddr;			/* P2PMEM */
	size_t alloc_len;		/* P2PMEM */
	void __iomem *io;		/* BAR */
};

/* Physical classes of a piece */
enum phyr_class {
	PHYR_CLASS_RAM,
	PHYR_CLASS_P2PMEM,		/* has ZONE_DEVICE pages */
	PHYR_CLASS_MMIO,		/* BAR window: no struct page */
};

struct phyr_kpiece {
	phys_addr_t phys;
	struct page *page;		/* NULL for MMIO */
	struct phyr_buf *buf;		/* held by the map's bufs[] */
	u64 buf_offset;
	u32 len;
	u32 seg;
	u32 range;
	u32 run;			/* index in map->runs (IOVA path) */
	u8 class;
	u8 map_type;
	u8 how;
	u16 flags;
	dma_addr_t dma;
	bool live;			/* dma holds a mapping to undo */
	unsigned long attrs;
};

struct phyr_iova_run {
#if PHYR_HAVE_IOVA
	struct dma_iova_state state;
#endif
	u32 first;			/* piece index */
	u32 count;
	size_t len;
	size_t linked;			/* bytes linked so far */
	unsigned long attrs;
	bool iova;			/* dma_iova_* in use */
};

struct phyr_mapping {
	struct kref ref;
	struct phyr_ep *ep;		/* executing endpoint */
	u32 path;
	enum dma_data_direction dir;
	bool mapped;			/* DMA mapping live */
	unsigned int active;		/* commands using it, phyr_file.lock */
	u32 nr_segs;
	struct phyr_buf **bufs;		/* one reference per segment */
	u32 nr_pieces;
	struct phyr_kpiece *pieces;
	u32 nr_ranges;
	struct phyr_dma_range *ranges;
	u64 total_len;
	struct sg_table sgt;		/* PHYR_PATH_SGTABLE */
	bool sgt_mapped;
	u32 nr_runs;			/* PHYR_PATH_IOVA */
	struct phyr_iova_run *runs;
};

/* phyr_main.c */
struct phyr_ep *phyr_ep_get(u32 id);
void phyr_ep_put(struct phyr_ep *ep);
int phyr_ep_enter(struct phyr_ep *ep);
void phyr_ep_leave(struct phyr_ep *ep);
int phyr_ep_enter2(struct phyr_ep *a, struct phyr_ep *b);
void phyr_ep_leave2(struct phyr_ep *a, struct phyr_ep *b);
int phyr_ep_register(struct phyr_ep *ep);
void phyr_ep_unregister(struct phyr_ep *ep);
void phyr_revoke_ep(struct phyr_ep *ep);

/* phyr_pci.c */
int phyr_pci_init(void);
void phyr_pci_exit(void);
void phyr_ep_release(struct kref *ref);
int phyr_ep_reset(struct phyr_ep *ep);
int phyr_queue_submit(struct phyr_queue *q, struct phyr_hw_cmd *cmd,
		      struct phyr_cmd *c, unsigned int timeout_ms,
		      u32 *out_flags);

/* phyr_buf.c */
int phyr_buf_create(const struct phyr_buf_alloc *req, struct phyr_ep *ep,
		    struct phyr_buf **out);
void phyr_buf_put(struct phyr_buf *buf);
int phyr_buf_copy(struct phyr_buf *buf, u64 offset, u64 len,
		  void __user *data, bool to_buf);
void phyr_buf_chunk(struct phyr_buf *buf, u64 offset, phys_addr_t *phys,
		    struct page **page, u64 *avail, enum phyr_class *class);

/* phyr_map.c */
u32 phyr_paths(void);
int phyr_map_create(struct phyr_ep *ep, const struct phyr_map *req,
		    struct phyr_buf **bufs, const struct phyr_map_seg *segs,
		    struct phyr_mapping **out);
void phyr_map_unmap(struct phyr_mapping *map);
void phyr_map_put(struct phyr_mapping *map);
bool phyr_map_uses(struct phyr_mapping *map, struct phyr_ep *ep);
int phyr_p2p_decide(struct phyr_ep *client, struct page *page,
		    u8 *map_type, u32 *source);

/* phyr_submit.c */
long phyr_ioctl_submit(struct phyr_file *pf, void __user *arg);

#endif /* _PHYR_H */
