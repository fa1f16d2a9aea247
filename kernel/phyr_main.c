// SPDX-License-Identifier: GPL-2.0
/*
 * phyr guest kernel driver: module entry, the endpoint table and the
 * /dev/phyr misc device with its ioctls (docs/KERNEL-UAPI.md). Every
 * argument is checked here before anything is allocated or mapped.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/pci-p2pdma.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "phyr.h"

/* The layout userspace sees, pinned */
static_assert(sizeof(struct phyr_info) == 152);
static_assert(sizeof(struct phyr_queue_info) == 40);
static_assert(sizeof(struct phyr_ep_info) == 384);
static_assert(sizeof(struct phyr_p2p_query) == 24);
static_assert(sizeof(struct phyr_buf_alloc) == 48);
static_assert(sizeof(struct phyr_buf_io) == 32);
static_assert(sizeof(struct phyr_map_seg) == 24);
static_assert(sizeof(struct phyr_dma_range) == 16);
static_assert(sizeof(struct phyr_piece) == 40);
static_assert(sizeof(struct phyr_map) == 64);
static_assert(sizeof(struct phyr_cqe) == 32);
static_assert(sizeof(struct phyr_submit) == 104);
static_assert(sizeof(struct phyr_hw_cmd) == 64);
static_assert(sizeof(struct phyr_hw_cqe) == 32);

static DEFINE_MUTEX(phyr_eps_lock);	/* phyr_eps */
static DEFINE_XARRAY(phyr_eps);		/* ENDPOINT_ID -> struct phyr_ep */
static unsigned int phyr_nr_eps;
static DEFINE_MUTEX(phyr_files_lock);	/* phyr_files; before phyr_file.lock */
static LIST_HEAD(phyr_files);

/* ---- endpoints ---- */

struct phyr_ep *phyr_ep_get(u32 id)
{
	struct phyr_ep *ep;

	mutex_lock(&phyr_eps_lock);
	ep = xa_load(&phyr_eps, id);
	if (ep)
		kref_get(&ep->ref);
	mutex_unlock(&phyr_eps_lock);
	return ep;
}

void phyr_ep_put(struct phyr_ep *ep)
{
	kref_put(&ep->ref, phyr_ep_release);
}

/* Use the device: -ENODEV once its removal began. */
int phyr_ep_enter(struct phyr_ep *ep)
{
	down_read(&ep->users);
	if (READ_ONCE(ep->gone)) {
		up_read(&ep->users);
		return -ENODEV;
	}
	return 0;
}

void phyr_ep_leave(struct phyr_ep *ep)
{
	up_read(&ep->users);
}

/* Two endpoints, in id order (two removals may run at once). */
int phyr_ep_enter2(struct phyr_ep *a, struct phyr_ep *b)
{
	int ret;

	if (a == b)
		return phyr_ep_enter(a);
	if (a->id > b->id)
		swap(a, b);
	ret = phyr_ep_enter(a);
	if (ret)
		return ret;
	ret = phyr_ep_enter(b);
	if (ret)
		phyr_ep_leave(a);
	return ret;
}

void phyr_ep_leave2(struct phyr_ep *a, struct phyr_ep *b)
{
	phyr_ep_leave(a);
	if (a != b)
		phyr_ep_leave(b);
}

int phyr_ep_register(struct phyr_ep *ep)
{
	int ret;

	mutex_lock(&phyr_eps_lock);
	if (phyr_nr_eps >= PHYR_MAX_ENDPOINTS) {
		ret = -ENOSPC;
		goto out;
	}
	ret = xa_insert(&phyr_eps, ep->id, ep, GFP_KERNEL);
	if (ret == -EBUSY) {
		dev_err(&ep->pdev->dev, "endpoint id %u is taken\n", ep->id);
		ret = -EEXIST;
	}
	if (!ret) {
		kref_get(&ep->ref);
		phyr_nr_eps++;
	}
out:
	mutex_unlock(&phyr_eps_lock);
	return ret;
}

void phyr_ep_unregister(struct phyr_ep *ep)
{
	mutex_lock(&phyr_eps_lock);
	WRITE_ONCE(ep->gone, true);
	if (xa_load(&phyr_eps, ep->id) == ep) {
		xa_erase(&phyr_eps, ep->id);
		phyr_nr_eps--;
		phyr_ep_put(ep);
	}
	mutex_unlock(&phyr_eps_lock);
}

/* Drop every file's reference to an object that names @ep. */
void phyr_revoke_ep(struct phyr_ep *ep)
{
	struct phyr_file *pf;
	struct phyr_mapping *map;
	struct phyr_buf *buf;
	unsigned long id;

	mutex_lock(&phyr_files_lock);
	list_for_each_entry(pf, &phyr_files, node) {
		mutex_lock(&pf->lock);
		xa_for_each(&pf->maps, id, map) {
			if (phyr_map_uses(map, ep)) {
				xa_erase(&pf->maps, id);
				phyr_map_put(map);
			}
		}
		xa_for_each(&pf->bufs, id, buf) {
			if (buf->ep == ep) {
				xa_erase(&pf->bufs, id);
				phyr_buf_put(buf);
			}
		}
		mutex_unlock(&pf->lock);
	}
	mutex_unlock(&phyr_files_lock);
}

/* ---- ioctls ---- */

static long phyr_ioctl_info(void __user *arg)
{
	struct phyr_info info = {};
	struct phyr_ep *ep;
	unsigned long id;

	info.uapi_version = PHYR_UAPI_VERSION;
	info.caps = phyr_paths();
	info.kernel_version = LINUX_VERSION_CODE;
	info.page_size = PAGE_SIZE;
	mutex_lock(&phyr_eps_lock);
	xa_for_each(&phyr_eps, id, ep)
		if (info.nr_endpoints < PHYR_MAX_ENDPOINTS)
			info.endpoints[info.nr_endpoints++] = id;
	mutex_unlock(&phyr_eps_lock);
	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long phyr_ioctl_ep_info(void __user *arg)
{
	struct phyr_ep_info info;
	struct pci_dev *pdev;
	struct phyr_ep *ep;
	unsigned int i;
	int ret;

	if (copy_from_user(&info, arg, sizeof(info)))
		return -EFAULT;
	ep = phyr_ep_get(info.ep);
	if (!ep)
		return -ENODEV;
	ret = phyr_ep_enter(ep);
	if (ret)
		goto out_put;
	pdev = ep->pdev;
	memset(&info, 0, sizeof(info));
	info.ep = ep->id;
	info.flags = (ep->p2pmem ? PHYR_EP_P2PMEM : 0) |
		     (ep->published ? PHYR_EP_PUBLISHED : 0);
	info.pci_domain = pci_domain_nr(pdev->bus);
	info.pci_bus = pdev->bus->number;
	info.pci_devfn = pdev->devfn;
	info.version = ep->version;
	info.switch_id = ep->switch_id;
	info.max_list_entries = ep->max_list;
	info.max_chain = ep->max_chain;
	info.nr_queues = ep->nr_queues;
	info.bar2_phys = pci_resource_start(pdev, PHYR_BAR_MEM);
	info.bar2_bus = pci_bus_address(pdev, PHYR_BAR_MEM);
	info.bar2_size = pci_resource_len(pdev, PHYR_BAR_MEM);
	for (i = 0; i < ep->nr_queues; i++) {
		struct phyr_queue *q = &ep->queues[i];

		info.queues[i].sq_dma = q->sq_dma;
		info.queues[i].cq_dma = q->cq_dma;
		info.queues[i].shadow_dma = q->shadow_dma;
		info.queues[i].entries = q->depth;
		info.queues[i].flags = q->polled ? PHYR_QUEUE_POLLED : 0;
		info.queues[i].vector = q->vector;
	}
	phyr_ep_leave(ep);
	ret = copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
out_put:
	phyr_ep_put(ep);
	return ret;
}

static long phyr_p2p_query(struct phyr_ep *provider, struct phyr_ep *client,
			   struct phyr_p2p_query *q)
{
#if IS_ENABLED(CONFIG_PCI_P2PDMA)
	void *kaddr;
	u8 map_type;
	int ret;

	if (!provider->p2pmem)
		return -ENXIO;
	q->distance = pci_p2pdma_distance(provider->pdev, &client->pdev->dev,
					  false);
	kaddr = pci_alloc_p2pmem(provider->pdev, PAGE_SIZE);
	if (!kaddr)
		return -ENOMEM;
	ret = phyr_p2p_decide(client, virt_to_page(kaddr), &map_type,
			      &q->source);
	q->map_type = map_type;
	pci_free_p2pmem(provider->pdev, kaddr, PAGE_SIZE);
	return ret;
#else
	return -EOPNOTSUPP;
#endif
}

static long phyr_ioctl_p2p_query(void __user *arg)
{
	struct phyr_ep *provider, *client;
	struct phyr_p2p_query q;
	int ret;

	if (copy_from_user(&q, arg, sizeof(q)))
		return -EFAULT;
	if (q.reserved)
		return -EINVAL;
	provider = phyr_ep_get(q.provider);
	if (!provider)
		return -ENODEV;
	client = phyr_ep_get(q.client);
	if (!client) {
		ret = -ENODEV;
		goto out_provider;
	}
	ret = phyr_ep_enter2(provider, client);
	if (ret)
		goto out_client;
	ret = phyr_p2p_query(provider, client, &q);
	phyr_ep_leave2(provider, client);
	if (!ret && copy_to_user(arg, &q, sizeof(q)))
		ret = -EFAULT;
out_client:
	phyr_ep_put(client);
out_provider:
	phyr_ep_put(provider);
	return ret;
}

static long phyr_ioctl_buf_alloc(struct phyr_file *pf, void __user *arg)
{
	struct phyr_ep *ep = NULL;
	struct phyr_buf_alloc req;
	struct phyr_buf *buf;
	bool peer;
	u32 id;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved)
		return -EINVAL;
	if (req.kind < PHYR_BUF_RAM || req.kind > PHYR_BUF_BAR || !req.len)
		return -EINVAL;
	peer = req.kind == PHYR_BUF_P2PMEM || req.kind == PHYR_BUF_BAR;
	if (!peer && req.ep)
		return -EINVAL;
	if (req.kind != PHYR_BUF_BAR && req.bar_offset)
		return -EINVAL;
	if (req.kind == PHYR_BUF_P2PMEM && !IS_ENABLED(CONFIG_PCI_P2PDMA))
		return -EOPNOTSUPP;
	if (peer) {
		ep = phyr_ep_get(req.ep);
		if (!ep)
			return -ENODEV;
		ret = phyr_ep_enter(ep);
		if (ret)
			goto out_put;
	}

	ret = phyr_buf_create(&req, ep, &buf);
	if (ret)
		goto out_leave;
	mutex_lock(&pf->lock);
	ret = xa_alloc(&pf->bufs, &id, buf, xa_limit_31b, GFP_KERNEL);
	if (!ret)
		kref_get(&buf->ref);
	mutex_unlock(&pf->lock);
	if (ret) {
		phyr_buf_put(buf);
		goto out_leave;
	}

	req.buf = id;
	req.phys = buf->phys;
	req.nr_chunks = buf->nr_chunks;
	req.bar_offset = buf->bar_offset;
	phyr_buf_put(buf);
	if (copy_to_user(arg, &req, sizeof(req))) {
		mutex_lock(&pf->lock);
		buf = xa_erase(&pf->bufs, id);
		mutex_unlock(&pf->lock);
		if (buf)
			phyr_buf_put(buf);
		ret = -EFAULT;
	}
out_leave:
	if (ep)
		phyr_ep_leave(ep);
out_put:
	if (ep)
		phyr_ep_put(ep);
	return ret;
}

static long phyr_ioctl_buf_free(struct phyr_file *pf, void __user *arg)
{
	struct phyr_buf_free req;
	struct phyr_buf *buf;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.reserved)
		return -EINVAL;
	mutex_lock(&pf->lock);
	buf = xa_erase(&pf->bufs, req.buf);
	mutex_unlock(&pf->lock);
	if (!buf)
		return -ENOENT;
	phyr_buf_put(buf);
	return 0;
}

/* A reference to buffer @id of @pf, or NULL. */
static struct phyr_buf *phyr_file_get_buf(struct phyr_file *pf, u32 id)
{
	struct phyr_buf *buf;

	lockdep_assert_held(&pf->lock);
	buf = xa_load(&pf->bufs, id);
	if (buf)
		kref_get(&buf->ref);
	return buf;
}

/* [offset, offset + len) lies in a buffer of @size bytes, len >= 1 */
static int phyr_check_span(u64 offset, u64 len, u64 size)
{
	if (!len)
		return -EINVAL;
	if (offset >= size || len > size - offset)
		return -ERANGE;
	return 0;
}

static long phyr_ioctl_buf_io(struct phyr_file *pf, void __user *arg,
			      bool to_buf)
{
	struct phyr_buf_io req;
	struct phyr_buf *buf;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags)
		return -EINVAL;
	mutex_lock(&pf->lock);
	buf = phyr_file_get_buf(pf, req.buf);
	mutex_unlock(&pf->lock);
	if (!buf)
		return -ENOENT;
	ret = phyr_check_span(req.offset, req.len, buf->len);
	if (!ret)
		ret = phyr_buf_copy(buf, req.offset, req.len,
				    u64_to_user_ptr(req.data), to_buf);
	phyr_buf_put(buf);
	return ret;
}

static int phyr_map_check(const struct phyr_map *req)
{
	if (req->flags)
		return -EINVAL;
	if (req->dir > PHYR_DIR_FROM_DEVICE)
		return -EINVAL;
	if (req->path < PHYR_PATH_SGTABLE || req->path > PHYR_PATH_RESOURCE)
		return -EINVAL;
	if (!(phyr_paths() & (1u << req->path)))
		return -EOPNOTSUPP;
	if (!req->nr_segs)
		return -EINVAL;
	if (req->nr_segs > PHYR_MAX_MAP_SEGS)
		return -E2BIG;
	return 0;
}

/* Buffer references for @segs, each span checked. */
static int phyr_map_bufs(struct phyr_file *pf, const struct phyr_map_seg *segs,
			 u32 n, struct phyr_buf **bufs)
{
	int ret = 0;
	u32 i;

	mutex_lock(&pf->lock);
	for (i = 0; i < n && !ret; i++) {
		if (segs[i].reserved) {
			ret = -EINVAL;
			break;
		}
		bufs[i] = phyr_file_get_buf(pf, segs[i].buf);
		if (!bufs[i]) {
			ret = -ENOENT;
			break;
		}
		ret = phyr_check_span(segs[i].offset, segs[i].len, bufs[i]->len);
	}
	mutex_unlock(&pf->lock);
	return ret;
}

static int phyr_map_copy_out(struct phyr_mapping *map, const struct phyr_map *req)
{
	struct phyr_piece __user *up = u64_to_user_ptr(req->pieces);
	struct phyr_piece out;
	u32 i;

	if (copy_to_user(u64_to_user_ptr(req->ranges), map->ranges,
			 array_size(map->nr_ranges, sizeof(*map->ranges))))
		return -EFAULT;
	for (i = 0; i < map->nr_pieces; i++) {
		struct phyr_kpiece *p = &map->pieces[i];

		memset(&out, 0, sizeof(out));
		out.dma_addr = p->dma;
		out.phys = p->phys;
		out.buf_offset = p->buf_offset;
		out.len = p->len;
		out.range = p->range;
		out.seg = p->seg;
		out.map_type = p->map_type;
		out.how = p->how;
		out.flags = p->flags & PHYR_PIECE_FALLBACK;
		if (copy_to_user(&up[i], &out, sizeof(out)))
			return -EFAULT;
	}
	return 0;
}

static long phyr_ioctl_map(struct phyr_file *pf, void __user *arg)
{
	struct phyr_map_seg *segs = NULL;
	struct phyr_buf **bufs = NULL;
	struct phyr_mapping *map = NULL;
	struct phyr_map req;
	struct phyr_ep *ep;
	u32 i, id;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	ret = phyr_map_check(&req);
	if (ret)
		return ret;
	segs = kvmalloc_array(req.nr_segs, sizeof(*segs), GFP_KERNEL);
	bufs = kvcalloc(req.nr_segs, sizeof(*bufs), GFP_KERNEL);
	if (!segs || !bufs) {
		ret = -ENOMEM;
		goto out_free;
	}
	if (copy_from_user(segs, u64_to_user_ptr(req.segs),
			   array_size(req.nr_segs, sizeof(*segs)))) {
		ret = -EFAULT;
		goto out_free;
	}
	ret = phyr_map_bufs(pf, segs, req.nr_segs, bufs);
	if (ret)
		goto out_free;

	ep = phyr_ep_get(req.ep);
	if (!ep) {
		ret = -ENODEV;
		goto out_free;
	}
	ret = phyr_ep_enter(ep);
	if (ret)
		goto out_put;
	ret = phyr_map_create(ep, &req, bufs, segs, &map);
	bufs = NULL;	/* the map took them */
	if (ret)
		goto out_leave;

	if (req.nr_ranges < map->nr_ranges || req.nr_pieces < map->nr_pieces)
		ret = -ENOSPC;
	else
		ret = phyr_map_copy_out(map, &req);
	req.nr_ranges = map->nr_ranges;
	req.nr_pieces = map->nr_pieces;
	req.total_len = map->total_len;
	if (ret == -ENOSPC) {
		/* tell the caller how much room it needs */
		if (copy_to_user(arg, &req, sizeof(req)))
			ret = -EFAULT;
		goto out_map;
	}
	if (ret)
		goto out_map;

	mutex_lock(&pf->lock);
	for (i = 0; i < map->nr_segs; i++)
		if (map->bufs[i]->ep && READ_ONCE(map->bufs[i]->ep->gone))
			ret = -ENODEV;	/* its provider is being removed */
	if (!ret)
		ret = xa_alloc(&pf->maps, &id, map, xa_limit_31b, GFP_KERNEL);
	mutex_unlock(&pf->lock);
	if (ret)
		goto out_map;
	req.map = id;
	map = NULL;	/* the file's now */
	if (copy_to_user(arg, &req, sizeof(req))) {
		mutex_lock(&pf->lock);
		map = xa_erase(&pf->maps, id);
		mutex_unlock(&pf->lock);
		ret = -EFAULT;
	}
out_map:
	if (map)
		phyr_map_put(map);
out_leave:
	phyr_ep_leave(ep);
out_put:
	phyr_ep_put(ep);
out_free:
	if (bufs) {
		for (i = 0; i < req.nr_segs && bufs[i]; i++)
			phyr_buf_put(bufs[i]);
		kvfree(bufs);
	}
	kvfree(segs);
	return ret;
}

static long phyr_ioctl_unmap(struct phyr_file *pf, void __user *arg)
{
	struct phyr_unmap req;
	struct phyr_mapping *map;
	int ret = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags & ~PHYR_UNMAP_KEEP)
		return -EINVAL;
	mutex_lock(&pf->lock);
	map = xa_load(&pf->maps, req.map);
	if (!map)
		ret = -ENOENT;
	else if (!(req.flags & PHYR_UNMAP_KEEP))
		xa_erase(&pf->maps, req.map);
	else if (!map->mapped)
		ret = -EINVAL;
	else if (map->active)
		ret = -EBUSY;	/* a command is using it */
	else
		phyr_map_unmap(map);
	mutex_unlock(&pf->lock);
	/* without KEEP the mapping goes with the last command using it */
	if (!ret && !(req.flags & PHYR_UNMAP_KEEP))
		phyr_map_put(map);
	return ret;
}

static long phyr_ioctl_reset(void __user *arg)
{
	struct phyr_reset req;
	struct phyr_ep *ep;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.reserved)
		return -EINVAL;
	ep = phyr_ep_get(req.ep);
	if (!ep)
		return -ENODEV;
	ret = phyr_ep_enter(ep);
	if (!ret) {
		ret = phyr_ep_reset(ep);
		phyr_ep_leave(ep);
	}
	phyr_ep_put(ep);
	return ret;
}

static long phyr_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct phyr_file *pf = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case PHYR_IOC_INFO:
		return phyr_ioctl_info(uarg);
	case PHYR_IOC_EP_INFO:
		return phyr_ioctl_ep_info(uarg);
	case PHYR_IOC_P2P_QUERY:
		return phyr_ioctl_p2p_query(uarg);
	case PHYR_IOC_BUF_ALLOC:
		return phyr_ioctl_buf_alloc(pf, uarg);
	case PHYR_IOC_BUF_FREE:
		return phyr_ioctl_buf_free(pf, uarg);
	case PHYR_IOC_BUF_READ:
		return phyr_ioctl_buf_io(pf, uarg, false);
	case PHYR_IOC_BUF_WRITE:
		return phyr_ioctl_buf_io(pf, uarg, true);
	case PHYR_IOC_MAP:
		return phyr_ioctl_map(pf, uarg);
	case PHYR_IOC_UNMAP:
		return phyr_ioctl_unmap(pf, uarg);
	case PHYR_IOC_SUBMIT:
		return phyr_ioctl_submit(pf, uarg);
	case PHYR_IOC_RESET:
		return phyr_ioctl_reset(uarg);
	default:
		return -ENOTTY;
	}
}

static int phyr_open(struct inode *inode, struct file *file)
{
	struct phyr_file *pf;

	pf = kzalloc(sizeof(*pf), GFP_KERNEL);
	if (!pf)
		return -ENOMEM;
	mutex_init(&pf->lock);
	xa_init_flags(&pf->bufs, XA_FLAGS_ALLOC1);
	xa_init_flags(&pf->maps, XA_FLAGS_ALLOC1);
	mutex_lock(&phyr_files_lock);
	list_add(&pf->node, &phyr_files);
	mutex_unlock(&phyr_files_lock);
	file->private_data = pf;
	return 0;
}

static int phyr_release(struct inode *inode, struct file *file)
{
	struct phyr_file *pf = file->private_data;
	struct phyr_mapping *map;
	struct phyr_buf *buf;
	unsigned long id;

	mutex_lock(&phyr_files_lock);
	list_del(&pf->node);
	mutex_unlock(&phyr_files_lock);

	xa_for_each(&pf->maps, id, map)
		phyr_map_put(map);
	xa_destroy(&pf->maps);
	xa_for_each(&pf->bufs, id, buf)
		phyr_buf_put(buf);
	xa_destroy(&pf->bufs);
	mutex_destroy(&pf->lock);
	kfree(pf);
	return 0;
}

static const struct file_operations phyr_fops = {
	.owner = THIS_MODULE,
	.open = phyr_open,
	.release = phyr_release,
	.unlocked_ioctl = phyr_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice phyr_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "phyr",
	.fops = &phyr_fops,
	.mode = 0600,
};

static int __init phyr_init(void)
{
	int ret;

	ret = misc_register(&phyr_misc);
	if (ret)
		return ret;
	ret = phyr_pci_init();
	if (ret)
		misc_deregister(&phyr_misc);
	return ret;
}

static void __exit phyr_exit(void)
{
	phyr_pci_exit();
	misc_deregister(&phyr_misc);
}

module_init(phyr_init);
module_exit(phyr_exit);

MODULE_DESCRIPTION("phyr test endpoint: Linux DMA mapping paths exercised from userspace");
MODULE_LICENSE("GPL");
