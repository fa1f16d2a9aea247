// SPDX-License-Identifier: GPL-2.0
/*
 * phyr guest kernel driver: buffers. RAM pages (one physically contiguous
 * block, or single pages of which no two consecutive ones are adjacent),
 * p2pmem of an endpoint (pci_alloc_p2pmem()), or a raw window of an
 * endpoint's BAR2 at a chosen offset.
 */
#include <linux/highmem.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/pci-p2pdma.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "phyr.h"

/* Tries per page to get one that does not follow its predecessor */
#define PHYR_SCATTER_TRIES	8

static int phyr_buf_ram(struct phyr_buf *buf)
{
	unsigned int order = get_order(buf->len);

	if (order > MAX_PAGE_ORDER)
		return -E2BIG;
	buf->page = alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, order);
	if (!buf->page)
		return -ENOMEM;
	buf->order = order;
	buf->phys = page_to_phys(buf->page);
	buf->nr_chunks = 1;
	return 0;
}

static void phyr_free_page_list(struct list_head *list)
{
	struct page *page, *tmp;

	list_for_each_entry_safe(page, tmp, list, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
}

static int phyr_buf_ram_scatter(struct phyr_buf *buf)
{
	unsigned long i, n = DIV_ROUND_UP(buf->len, PAGE_SIZE);
	LIST_HEAD(spare);
	unsigned int tries;
	struct page *page;
	int ret = 0;

	if (n > totalram_pages() / 2)
		return -E2BIG;
	buf->pages = kvcalloc(n, sizeof(*buf->pages), GFP_KERNEL);
	if (!buf->pages)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		for (tries = 0;; tries++) {
			page = alloc_page(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN);
			if (!page) {
				ret = -ENOMEM;
				goto out;
			}
			if (!i || tries >= PHYR_SCATTER_TRIES ||
			    page_to_pfn(page) != page_to_pfn(buf->pages[i - 1]) + 1)
				break;
			/* adjacent to its predecessor: keep it aside */
			list_add(&page->lru, &spare);
		}
		buf->pages[i] = page;
		buf->nr_pages = i + 1;
		if (!i || page_to_pfn(page) != page_to_pfn(buf->pages[i - 1]) + 1)
			buf->nr_chunks++;
		cond_resched();
	}
	buf->phys = page_to_phys(buf->pages[0]);
out:
	phyr_free_page_list(&spare);
	return ret;
}

static int phyr_buf_p2pmem(struct phyr_buf *buf)
{
#if IS_ENABLED(CONFIG_PCI_P2PDMA)
	struct pci_dev *pdev = buf->ep->pdev;

	if (!buf->ep->p2pmem)
		return -ENXIO;
	buf->alloc_len = PAGE_ALIGN(buf->len);
	buf->kaddr = pci_alloc_p2pmem(pdev, buf->alloc_len);
	if (!buf->kaddr)
		return -ENOMEM;
	buf->phys = virt_to_phys(buf->kaddr);
	buf->bar_offset = pci_p2pmem_virt_to_bus(pdev, buf->kaddr) -
			  pci_bus_address(pdev, PHYR_BAR_MEM);
	buf->nr_chunks = 1;
	return 0;
#else
	return -EOPNOTSUPP;
#endif
}

static int phyr_buf_bar(struct phyr_buf *buf, u64 offset)
{
	struct pci_dev *pdev = buf->ep->pdev;
	u64 bar_len = pci_resource_len(pdev, PHYR_BAR_MEM);

	if (!PAGE_ALIGNED(offset))
		return -EINVAL;
	if (offset >= bar_len || buf->len > bar_len - offset)
		return -ERANGE;
	buf->io = pci_iomap_range(pdev, PHYR_BAR_MEM, offset, buf->len);
	if (!buf->io)
		return -ENOMEM;
	buf->bar_offset = offset;
	buf->phys = pci_resource_start(pdev, PHYR_BAR_MEM) + offset;
	buf->nr_chunks = 1;
	return 0;
}

static void phyr_buf_release(struct kref *ref)
{
	struct phyr_buf *buf = container_of(ref, struct phyr_buf, ref);
	struct phyr_ep *ep = buf->ep;
	unsigned long i;

	switch (buf->kind) {
	case PHYR_BUF_RAM:
		if (buf->page)
			__free_pages(buf->page, buf->order);
		break;
	case PHYR_BUF_RAM_SCATTER:
		for (i = 0; i < buf->nr_pages; i++)
			__free_page(buf->pages[i]);
		kvfree(buf->pages);
		break;
	case PHYR_BUF_P2PMEM:
#if IS_ENABLED(CONFIG_PCI_P2PDMA)
		if (buf->kaddr)
			pci_free_p2pmem(ep->pdev, buf->kaddr, buf->alloc_len);
#endif
		break;
	case PHYR_BUF_BAR:
		if (buf->io)
			pci_iounmap(ep->pdev, buf->io);
		break;
	}
	if (ep) {
		if (atomic_dec_and_test(&ep->nr_objs))
			wake_up_all(&ep->objs_wait);
		phyr_ep_put(ep);
	}
	kfree(buf);
}

void phyr_buf_put(struct phyr_buf *buf)
{
	kref_put(&buf->ref, phyr_buf_release);
}

/*
 * @ep is the provider for P2PMEM and BAR (the caller holds it entered),
 * NULL for RAM. The request's fields are checked here.
 */
int phyr_buf_create(const struct phyr_buf_alloc *req, struct phyr_ep *ep,
		    struct phyr_buf **out)
{
	struct phyr_buf *buf;
	int ret;

	if (!req->len)
		return -EINVAL;
	buf = kzalloc(sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	kref_init(&buf->ref);
	buf->kind = req->kind;
	buf->len = req->len;
	if (ep) {
		kref_get(&ep->ref);
		atomic_inc(&ep->nr_objs);
		buf->ep = ep;
	}

	switch (req->kind) {
	case PHYR_BUF_RAM:
		ret = phyr_buf_ram(buf);
		break;
	case PHYR_BUF_RAM_SCATTER:
		ret = phyr_buf_ram_scatter(buf);
		break;
	case PHYR_BUF_P2PMEM:
		ret = phyr_buf_p2pmem(buf);
		break;
	case PHYR_BUF_BAR:
		ret = phyr_buf_bar(buf, req->bar_offset);
		break;
	default:
		ret = -EINVAL;
	}
	if (ret) {
		phyr_buf_put(buf);
		return ret;
	}
	*out = buf;
	return 0;
}

/*
 * The physically contiguous chunk of @buf at @offset (< buf->len): its
 * physical address, the page holding it (NULL for a BAR window), how many
 * bytes of the buffer follow contiguously, and its class.
 */
void phyr_buf_chunk(struct phyr_buf *buf, u64 offset, phys_addr_t *phys,
		    struct page **page, u64 *avail, enum phyr_class *class)
{
	unsigned long i, n;

	*avail = buf->len - offset;
	switch (buf->kind) {
	case PHYR_BUF_RAM_SCATTER:
		i = offset >> PAGE_SHIFT;
		*phys = page_to_phys(buf->pages[i]) + offset_in_page(offset);
		n = 1;
		while (i + n < buf->nr_pages &&
		       page_to_pfn(buf->pages[i + n]) == page_to_pfn(buf->pages[i]) + n)
			n++;
		*avail = min_t(u64, *avail,
			       (n << PAGE_SHIFT) - offset_in_page(offset));
		*class = PHYR_CLASS_RAM;
		break;
	case PHYR_BUF_BAR:
		*phys = buf->phys + offset;
		*class = PHYR_CLASS_MMIO;
		*page = NULL;
		return;
	case PHYR_BUF_P2PMEM:
		*phys = buf->phys + offset;
		*class = PHYR_CLASS_P2PMEM;
		break;
	default:
		*phys = buf->phys + offset;
		*class = PHYR_CLASS_RAM;
		break;
	}
	*page = pfn_to_page(PHYS_PFN(*phys));
}

static int phyr_copy_mmio(void __iomem *io, u64 len, void __user *data,
			  bool to_buf)
{
	size_t n;
	void *bounce;
	int ret = 0;

	bounce = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	while (len) {
		n = min_t(u64, len, PAGE_SIZE);
		if (to_buf) {
			if (copy_from_user(bounce, data, n)) {
				ret = -EFAULT;
				break;
			}
			memcpy_toio(io, bounce, n);
		} else {
			memcpy_fromio(bounce, io, n);
			if (copy_to_user(data, bounce, n)) {
				ret = -EFAULT;
				break;
			}
		}
		io += n;
		data += n;
		len -= n;
		cond_resched();
	}
	kfree(bounce);
	return ret;
}

/* Copy bytes between userspace and [offset, offset + len) of @buf (checked). */
int phyr_buf_copy(struct phyr_buf *buf, u64 offset, u64 len,
		  void __user *data, bool to_buf)
{
	enum phyr_class class;
	struct page *page;
	phys_addr_t phys;
	unsigned long left;
	u64 avail;
	size_t n;
	void *va;

	if (buf->kind == PHYR_BUF_BAR)
		return phyr_copy_mmio(buf->io + offset, len, data, to_buf);

	while (len) {
		phyr_buf_chunk(buf, offset, &phys, &page, &avail, &class);
		n = min3(len, avail, (u64)(PAGE_SIZE - offset_in_page(phys)));
		if (buf->kind == PHYR_BUF_P2PMEM) {
			/* p2pmem sits in the kernel's linear map */
			va = buf->kaddr + offset;
			left = to_buf ? copy_from_user(va, data, n) :
					copy_to_user(data, va, n);
		} else {
			va = kmap_local_page(page);
			left = to_buf ?
				copy_from_user(va + offset_in_page(phys), data, n) :
				copy_to_user(data, va + offset_in_page(phys), n);
			kunmap_local(va);
		}
		if (left)
			return -EFAULT;
		offset += n;
		data += n;
		len -= n;
		cond_resched();
	}
	return 0;
}
