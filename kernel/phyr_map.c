// SPDX-License-Identifier: GPL-2.0
/*
 * phyr guest kernel driver: mapping a set of buffer segments for one
 * executing endpoint through one of Linux's DMA API paths, and recording
 * what the kernel decided for every physically contiguous piece.
 *
 *  PHYR_PATH_SGTABLE   one scatterlist, dma_map_sgtable(); a DMA segment is
 *                      a bus address exactly where sg_dma_is_bus_address().
 *  PHYR_PATH_IOVA      the two-step IOVA API: runs of RAM (or of peer memory
 *                      routed through the host bridge, DMA_ATTR_MMIO) are
 *                      linked into one IOVA range each; bus-address peers
 *                      get pci_p2pdma_bus_addr_map(); when
 *                      dma_iova_try_alloc() fails (no IOMMU translation)
 *                      every piece goes through dma_map_phys() instead.
 *  PHYR_PATH_PHYS      dma_map_phys() per piece, DMA_ATTR_MMIO for peers.
 *  PHYR_PATH_RESOURCE  dma_map_page_attrs() for RAM, dma_map_resource()
 *                      for peers, per piece (every kernel).
 *
 * PHYS and RESOURCE always send peer memory through the IOMMU (the host
 * bridge route), whatever pci_p2pdma would decide.
 */
#include <linux/mm.h>
#include <linux/pci-p2pdma.h>
#include <linux/slab.h>

#include "phyr.h"

/* Internal piece flags, above the uapi ones */
#define PHYR_PIECE_RUN		BIT(8)	/* linked into map->runs[p->run] */

u32 phyr_paths(void)
{
	u32 caps = PHYR_CAP_PATH_SGTABLE | PHYR_CAP_PATH_RESOURCE;

	if (IS_ENABLED(CONFIG_PCI_P2PDMA))
		caps |= PHYR_CAP_P2PDMA;
	if (PHYR_HAVE_IOVA)
		caps |= PHYR_CAP_PATH_IOVA;
	if (PHYR_HAVE_MAP_PHYS)
		caps |= PHYR_CAP_PATH_PHYS;
#ifdef PHYR_HAVE_P2PDMA_STATE
	caps |= PHYR_CAP_P2PDMA_STATE;
#endif
	return caps;
}

static struct device *phyr_map_dev(struct phyr_mapping *map)
{
	return &map->ep->pdev->dev;
}

/*
 * How the kernel routes DMA from @client to the p2pmem @page. A module
 * cannot call pci_p2pdma_state() on kernels that do not export
 * __pci_p2pdma_update_state() (7.3 does not): there, ask the DMA layer
 * the same question by mapping that one page with dma_map_sgtable(),
 * which runs pci_p2pdma_state() inside.
 */
int phyr_p2p_decide(struct phyr_ep *client, struct page *page, u8 *map_type,
		    u32 *source)
{
	struct device *dev = &client->pdev->dev;
#ifdef PHYR_HAVE_P2PDMA_STATE
	struct pci_p2pdma_map_state state = {};

	*source = PHYR_DECIDED_BY_STATE;
	switch (pci_p2pdma_state(&state, dev, page)) {
	case PCI_P2PDMA_MAP_BUS_ADDR:
		*map_type = PHYR_MAP_BUS_ADDR;
		return 0;
	case PCI_P2PDMA_MAP_THRU_HOST_BRIDGE:
		*map_type = PHYR_MAP_THRU_HOST_BRIDGE;
		return 0;
	case PCI_P2PDMA_MAP_NONE:
		*map_type = PHYR_MAP_NONE;
		return 0;
	default:
		*map_type = PHYR_MAP_NOT_SUPPORTED;
		return 0;
	}
#else
	struct sg_table sgt;
	int ret;

	*source = PHYR_DECIDED_BY_SG_PROBE;
	ret = sg_alloc_table(&sgt, 1, GFP_KERNEL);
	if (ret)
		return ret;
	sg_set_page(sgt.sgl, page, PAGE_SIZE, 0);
	ret = dma_map_sgtable(dev, &sgt, DMA_BIDIRECTIONAL,
			      DMA_ATTR_SKIP_CPU_SYNC);
	if (ret == -EREMOTEIO) {
		*map_type = PHYR_MAP_NOT_SUPPORTED;
		ret = 0;
	} else if (!ret) {
		*map_type = sg_dma_is_bus_address(sgt.sgl) ?
			    PHYR_MAP_BUS_ADDR : PHYR_MAP_THRU_HOST_BRIDGE;
		dma_unmap_sgtable(dev, &sgt, DMA_BIDIRECTIONAL,
				  DMA_ATTR_SKIP_CPU_SYNC);
	}
	sg_free_table(&sgt);
	return ret;
#endif
}

/* Split the segments into physically contiguous pieces. */
static int phyr_map_pieces(struct phyr_mapping *map,
			   const struct phyr_map_seg *segs)
{
	struct phyr_kpiece *p;
	enum phyr_class class;
	struct page *page;
	phys_addr_t phys;
	u64 off, left, avail;
	u32 i, n = 0;
	u32 len;

	for (i = 0; i < map->nr_segs; i++) {
		for (off = segs[i].offset, left = segs[i].len; left;
		     off += len, left -= len) {
			phyr_buf_chunk(map->bufs[i], off, &phys, &page, &avail,
				       &class);
			len = min3(left, avail, (u64)PHYR_MAX_RANGE_LEN);
			if (++n > PHYR_MAX_PIECES)
				return -E2BIG;
		}
	}
	map->pieces = kvcalloc(n, sizeof(*map->pieces), GFP_KERNEL);
	if (!map->pieces)
		return -ENOMEM;
	map->nr_pieces = n;

	p = map->pieces;
	for (i = 0; i < map->nr_segs; i++) {
		for (off = segs[i].offset, left = segs[i].len; left;
		     off += len, left -= len, p++) {
			phyr_buf_chunk(map->bufs[i], off, &phys, &page, &avail,
				       &class);
			len = min3(left, avail, (u64)PHYR_MAX_RANGE_LEN);
			p->phys = phys;
			p->page = page;
			p->buf = map->bufs[i];
			p->buf_offset = off;
			p->len = len;
			p->seg = i;
			p->class = class;
			p->map_type = class == PHYR_CLASS_RAM ?
				      PHYR_MAP_NONE : PHYR_MAP_THRU_HOST_BRIDGE;
			map->total_len += len;
		}
	}
	return 0;
}

static int phyr_map_alloc_ranges(struct phyr_mapping *map, u32 n)
{
	map->ranges = kvcalloc(n, sizeof(*map->ranges), GFP_KERNEL);
	if (!map->ranges)
		return -ENOMEM;
	map->nr_ranges = n;
	return 0;
}

/* One dma_range per piece (per-piece paths, and pieces outside runs). */
static void phyr_range_of_piece(struct phyr_mapping *map, struct phyr_kpiece *p,
				u32 r)
{
	map->ranges[r].addr = p->dma;
	map->ranges[r].len = p->len;
	map->ranges[r].flags = p->map_type == PHYR_MAP_BUS_ADDR ?
			       PHYR_RANGE_BUS_ADDR : 0;
	p->range = r;
}

/* ---- PHYR_PATH_SGTABLE ---- */

static int phyr_map_sgtable(struct phyr_mapping *map)
{
	struct device *dev = phyr_map_dev(map);
	struct phyr_kpiece *p = map->pieces;
	struct scatterlist *sg;
	u64 used = 0;
	u32 i, r = 0;
	int ret;

	for (i = 0; i < map->nr_pieces; i++)
		if (map->pieces[i].class == PHYR_CLASS_MMIO)
			return -EINVAL;	/* a BAR window has no struct page */
	ret = sg_alloc_table(&map->sgt, map->nr_pieces, GFP_KERNEL);
	if (ret)
		return ret;
	for_each_sgtable_sg(&map->sgt, sg, i)
		sg_set_page(sg, p[i].page, p[i].len, offset_in_page(p[i].phys));
	ret = dma_map_sgtable(dev, &map->sgt, map->dir, 0);
	if (ret)
		return ret;	/* -EREMOTEIO: a peer the kernel cannot reach */
	map->sgt_mapped = true;

	ret = phyr_map_alloc_ranges(map, map->sgt.nents);
	if (ret)
		return ret;
	for_each_sgtable_dma_sg(&map->sgt, sg, i) {
		map->ranges[i].addr = sg_dma_address(sg);
		map->ranges[i].len = sg_dma_len(sg);
		map->ranges[i].flags = sg_dma_is_bus_address(sg) ?
				       PHYR_RANGE_BUS_ADDR : 0;
	}

	/*
	 * The DMA layer concatenates whole entries in order and never splits
	 * one: piece i is the next p->len bytes of the DMA segments.
	 */
	for (i = 0; i < map->nr_pieces; i++, p++) {
		if (WARN_ON_ONCE(r >= map->nr_ranges))
			return -EIO;
		p->range = r;
		p->dma = map->ranges[r].addr + used;
		p->how = PHYR_HOW_SGTABLE;
		if (p->class != PHYR_CLASS_RAM)
			p->map_type = map->ranges[r].flags & PHYR_RANGE_BUS_ADDR ?
				      PHYR_MAP_BUS_ADDR :
				      PHYR_MAP_THRU_HOST_BRIDGE;
		used += p->len;
		if (WARN_ON_ONCE(used > map->ranges[r].len))
			return -EIO;
		if (used == map->ranges[r].len) {
			r++;
			used = 0;
		}
	}
	if (WARN_ON_ONCE(r != map->nr_ranges))
		return -EIO;
	return 0;
}

/* ---- one mapping per piece: PHYR_PATH_PHYS, PHYR_PATH_RESOURCE ---- */

static int phyr_map_piece(struct phyr_mapping *map, struct phyr_kpiece *p,
			  bool phys_api)
{
	struct device *dev = phyr_map_dev(map);
	bool peer = p->class != PHYR_CLASS_RAM;

	p->attrs = 0;
#if PHYR_HAVE_MAP_PHYS
	if (phys_api) {
		if (peer)
			p->attrs = DMA_ATTR_MMIO;
		p->dma = dma_map_phys(dev, p->phys, p->len, map->dir, p->attrs);
		p->how = PHYR_HOW_MAP_PHYS;
		goto check;
	}
#endif
	if (peer) {
		p->dma = dma_map_resource(dev, p->phys, p->len, map->dir, 0);
		p->how = PHYR_HOW_MAP_RESOURCE;
	} else {
		p->dma = dma_map_page_attrs(dev, p->page,
					    offset_in_page(p->phys), p->len,
					    map->dir, 0);
		p->how = PHYR_HOW_MAP_PAGE;
	}
#if PHYR_HAVE_MAP_PHYS
check:
#endif
	if (dma_mapping_error(dev, p->dma))
		return -ENOMEM;
	p->live = true;
	return 0;
}

static void phyr_unmap_piece(struct phyr_mapping *map, struct phyr_kpiece *p)
{
	struct device *dev = phyr_map_dev(map);

	if (!p->live)
		return;
	switch (p->how) {
#if PHYR_HAVE_MAP_PHYS
	case PHYR_HOW_MAP_PHYS:
		dma_unmap_phys(dev, p->dma, p->len, map->dir, p->attrs);
		break;
#endif
	case PHYR_HOW_MAP_RESOURCE:
		dma_unmap_resource(dev, p->dma, p->len, map->dir, 0);
		break;
	case PHYR_HOW_MAP_PAGE:
		dma_unmap_page_attrs(dev, p->dma, p->len, map->dir, 0);
		break;
	}
	p->live = false;
}

static int phyr_map_each(struct phyr_mapping *map, bool phys_api)
{
	u32 i;
	int ret;

	for (i = 0; i < map->nr_pieces; i++) {
		ret = phyr_map_piece(map, &map->pieces[i], phys_api);
		if (ret)
			return ret;
	}
	ret = phyr_map_alloc_ranges(map, map->nr_pieces);
	if (ret)
		return ret;
	for (i = 0; i < map->nr_pieces; i++)
		phyr_range_of_piece(map, &map->pieces[i], i);
	return 0;
}

/* ---- PHYR_PATH_IOVA ---- */

#if PHYR_HAVE_IOVA

/* The kernel's route to each peer piece, asked once per buffer. */
static int phyr_iova_routes(struct phyr_mapping *map)
{
	struct phyr_kpiece *p, *prev = NULL;
	u32 i, source;
	int ret;

	for (i = 0, p = map->pieces; i < map->nr_pieces; i++, p++) {
		if (p->class != PHYR_CLASS_P2PMEM)
			continue;
		if (prev && prev->buf == p->buf) {
			p->map_type = prev->map_type;
		} else {
			ret = phyr_p2p_decide(map->ep, p->page, &p->map_type,
					      &source);
			if (ret)
				return ret;
		}
		if (p->map_type == PHYR_MAP_NOT_SUPPORTED)
			return -EREMOTEIO;
		prev = p;
	}
	return 0;
}

static int phyr_iova_bus(struct phyr_mapping *map, struct phyr_kpiece *p)
{
#if PHYR_HAVE_P2P_PROVIDER
	struct p2pdma_provider *provider;

	provider = pcim_p2pdma_provider(p->buf->ep->pdev, PHYR_BAR_MEM);
	if (!provider)
		return -ENXIO;
	p->dma = pci_p2pdma_bus_addr_map(provider, p->phys);
	p->how = PHYR_HOW_BUS_ADDR_MAP;
	return 0;
#else
	return -EOPNOTSUPP;
#endif
}

static bool phyr_iova_piece(struct phyr_kpiece *p)
{
	return p->map_type != PHYR_MAP_BUS_ADDR;
}

/* Group consecutive IOVA pieces whose inner edges are granule-aligned. */
static int phyr_iova_runs(struct phyr_mapping *map)
{
	unsigned long mask = dma_get_merge_boundary(phyr_map_dev(map));
	struct phyr_iova_run *run = NULL;
	struct phyr_kpiece *p;
	unsigned long attrs;
	u32 i, n = 0;

	if (!mask)
		mask = PAGE_SIZE - 1;
	map->runs = kvcalloc(map->nr_pieces, sizeof(*map->runs), GFP_KERNEL);
	if (!map->runs)
		return -ENOMEM;
	for (i = 0, p = map->pieces; i < map->nr_pieces; i++, p++) {
		if (!phyr_iova_piece(p)) {
			run = NULL;
			continue;
		}
		attrs = p->class == PHYR_CLASS_RAM ? 0 : DMA_ATTR_MMIO;
		if (!run || run->attrs != attrs ||
		    (p->phys & mask) ||
		    ((p[-1].phys + p[-1].len) & mask) ||
		    run->len + p->len > PHYR_MAX_RANGE_LEN) {
			run = &map->runs[n++];
			run->first = i;
			run->attrs = attrs;
		}
		run->count++;
		run->len += p->len;
		p->run = run - map->runs;
		p->flags |= PHYR_PIECE_RUN;
	}
	map->nr_runs = n;
	return 0;
}

static void phyr_iova_run_unmap(struct phyr_mapping *map,
				struct phyr_iova_run *run)
{
	u32 i;

	if (run->iova) {
		dma_iova_destroy(phyr_map_dev(map), &run->state, run->linked,
				 map->dir, run->attrs);
		run->iova = false;
		run->linked = 0;
		return;
	}
	for (i = 0; i < run->count; i++)
		phyr_unmap_piece(map, &map->pieces[run->first + i]);
}

static int phyr_iova_run_map(struct phyr_mapping *map, struct phyr_iova_run *run)
{
	struct device *dev = phyr_map_dev(map);
	struct phyr_kpiece *p = &map->pieces[run->first];
	u32 i;
	int ret;

	if (!dma_iova_try_alloc(dev, &run->state, p->phys, run->len)) {
		/* no IOVA API here (no translation): map piece by piece */
		for (i = 0; i < run->count; i++, p++) {
			ret = phyr_map_piece(map, p, PHYR_HAVE_MAP_PHYS);
			p->flags |= PHYR_PIECE_FALLBACK;
			if (ret)
				return ret;
		}
		return 0;
	}
	run->iova = true;
	for (i = 0; i < run->count; i++, p++) {
		ret = dma_iova_link(dev, &run->state, p->phys, run->linked,
				    p->len, map->dir, run->attrs);
		if (ret)
			return ret;
		p->dma = run->state.addr + run->linked;
		p->how = PHYR_HOW_IOVA_LINK;
		run->linked += p->len;
	}
	return dma_iova_sync(dev, &run->state, 0, run->linked);
}

static int phyr_map_iova(struct phyr_mapping *map)
{
	struct phyr_kpiece *p;
	struct phyr_iova_run *run;
	u32 i, r = 0;
	int ret;

	ret = phyr_iova_routes(map);
	if (ret)
		return ret;
	for (i = 0, p = map->pieces; i < map->nr_pieces; i++, p++) {
		if (!phyr_iova_piece(p)) {
			ret = phyr_iova_bus(map, p);
			if (ret)
				return ret;
		}
	}
	ret = phyr_iova_runs(map);
	if (ret)
		return ret;
	for (i = 0; i < map->nr_runs; i++) {
		ret = phyr_iova_run_map(map, &map->runs[i]);
		if (ret)
			return ret;
	}

	/* one range per linked run, one per other piece, in piece order */
	ret = phyr_map_alloc_ranges(map, map->nr_pieces);
	if (ret)
		return ret;
	for (i = 0, p = map->pieces; i < map->nr_pieces; i++, p++) {
		run = p->flags & PHYR_PIECE_RUN ? &map->runs[p->run] : NULL;
		if (!run || !run->iova) {
			phyr_range_of_piece(map, p, r++);
			continue;
		}
		if (i == run->first) {
			map->ranges[r].addr = run->state.addr;
			map->ranges[r].len = run->len;
			map->ranges[r].flags = 0;
			r++;
		}
		p->range = r - 1;
	}
	map->nr_ranges = r;
	return 0;
}

#endif /* PHYR_HAVE_IOVA */

void phyr_map_unmap(struct phyr_mapping *map)
{
	u32 i;

	if (!map->mapped)
		return;
	switch (map->path) {
	case PHYR_PATH_SGTABLE:
		if (map->sgt_mapped)
			dma_unmap_sgtable(phyr_map_dev(map), &map->sgt,
					  map->dir, 0);
		map->sgt_mapped = false;
		sg_free_table(&map->sgt);
		break;
#if PHYR_HAVE_IOVA
	case PHYR_PATH_IOVA:
		for (i = 0; i < map->nr_runs; i++)
			phyr_iova_run_unmap(map, &map->runs[i]);
		/* bus-address pieces hold no mapping */
		break;
#endif
	default:
		for (i = 0; i < map->nr_pieces; i++)
			phyr_unmap_piece(map, &map->pieces[i]);
		break;
	}
	map->mapped = false;
}

static void phyr_map_release(struct kref *ref)
{
	struct phyr_mapping *map = container_of(ref, struct phyr_mapping, ref);
	struct phyr_ep *ep = map->ep;
	u32 i;

	phyr_map_unmap(map);
	for (i = 0; i < map->nr_segs; i++)
		phyr_buf_put(map->bufs[i]);
	kvfree(map->bufs);
	kvfree(map->pieces);
	kvfree(map->ranges);
	kvfree(map->runs);
	kfree(map);
	if (atomic_dec_and_test(&ep->nr_objs))
		wake_up_all(&ep->objs_wait);
	phyr_ep_put(ep);
}

void phyr_map_put(struct phyr_mapping *map)
{
	kref_put(&map->ref, phyr_map_release);
}

bool phyr_map_uses(struct phyr_mapping *map, struct phyr_ep *ep)
{
	u32 i;

	if (map->ep == ep)
		return true;
	for (i = 0; i < map->nr_segs; i++)
		if (map->bufs[i]->ep == ep)
			return true;
	return false;
}

/*
 * Map @segs (checked against their buffers by the caller) for @ep, which
 * the caller holds entered. Takes over @bufs (one reference per segment)
 * whatever the outcome.
 */
int phyr_map_create(struct phyr_ep *ep, const struct phyr_map *req,
		    struct phyr_buf **bufs, const struct phyr_map_seg *segs,
		    struct phyr_mapping **out)
{
	struct phyr_mapping *map;
	u32 i;
	int ret;

	map = kzalloc(sizeof(*map), GFP_KERNEL);
	if (!map) {
		for (i = 0; i < req->nr_segs; i++)
			phyr_buf_put(bufs[i]);
		kvfree(bufs);
		return -ENOMEM;
	}
	kref_init(&map->ref);
	kref_get(&ep->ref);
	atomic_inc(&ep->nr_objs);
	map->ep = ep;
	map->path = req->path;
	map->dir = req->dir;
	map->nr_segs = req->nr_segs;
	map->bufs = bufs;
	map->mapped = true;

	ret = phyr_map_pieces(map, segs);
	if (ret)
		goto err;
	switch (req->path) {
	case PHYR_PATH_SGTABLE:
		ret = phyr_map_sgtable(map);
		break;
#if PHYR_HAVE_IOVA
	case PHYR_PATH_IOVA:
		ret = phyr_map_iova(map);
		break;
#endif
#if PHYR_HAVE_MAP_PHYS
	case PHYR_PATH_PHYS:
		ret = phyr_map_each(map, true);
		break;
#endif
	case PHYR_PATH_RESOURCE:
		ret = phyr_map_each(map, false);
		break;
	default:
		ret = -EOPNOTSUPP;
	}
	if (ret)
		goto err;
	*out = map;
	return 0;
err:
	phyr_map_put(map);
	return ret;
}
