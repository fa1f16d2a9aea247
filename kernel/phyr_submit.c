// SPDX-License-Identifier: GPL-2.0
/*
 * phyr guest kernel driver: PHYR_IOC_SUBMIT. The source and destination
 * lists are a map's dma_range list, written into coherent memory as one
 * block or as chained blocks of block_entries data entries each
 * (docs/ABI.md section 5), then one command goes on the chosen queue.
 */
#include <linux/dma-mapping.h>
#include <linux/uaccess.h>

#include "phyr.h"

/* Which lists each opcode reads: bit 0 source, bit 1 destination */
static const u8 phyr_op_lists[] = {
	[PHYR_OP_NOP] = 0,
	[PHYR_OP_COPY] = 3,
	[PHYR_OP_FILL] = 2,
	[PHYR_OP_CRC32C] = 1,
	[PHYR_OP_COMPARE] = 3,
};

/* Entries a list of @n data entries takes in blocks of @k (0: one block) */
static u32 phyr_list_entries(u32 n, u32 k)
{
	if (!k || k >= n)
		return n;
	return n + DIV_ROUND_UP(n, k) - 1;	/* one CHAIN per extra block */
}

/* Bytes of the block that starts with data entry @first. */
static u32 phyr_block_bytes(u32 n, u32 k, u32 first)
{
	u32 left = n - first;

	if (!k || left <= k)
		return left * sizeof(struct phyr_hw_range);
	return (k + 1) * sizeof(struct phyr_hw_range);
}

/*
 * Write @map's ranges at @out (device address @dma), in blocks of @k data
 * entries chained by CHAIN entries; fill in the list head.
 */
static void phyr_write_list(struct phyr_hw_range *out, dma_addr_t dma,
			    const struct phyr_mapping *map, u32 k,
			    struct phyr_hw_range *head)
{
	u32 n = map->nr_ranges, i = 0, in_block = 0;

	head->addr = cpu_to_le64(dma);
	head->len = cpu_to_le32(phyr_block_bytes(n, k, 0));
	head->flags = 0;
	while (i < n) {
		if (k && in_block == k) {
			/* the next block follows this CHAIN entry directly */
			dma += sizeof(*out);
			out->addr = cpu_to_le64(dma);
			out->len = cpu_to_le32(phyr_block_bytes(n, k, i));
			out->flags = cpu_to_le32(PHYR_RANGE_CHAIN);
			out++;
			in_block = 0;
			continue;
		}
		out->addr = cpu_to_le64(map->ranges[i].addr);
		out->len = cpu_to_le32(map->ranges[i].len);
		out->flags = cpu_to_le32(map->ranges[i].flags);
		out++;
		dma += sizeof(*out);
		in_block++;
		i++;
	}
}

static int phyr_submit_check(const struct phyr_submit *req)
{
	u8 lists;

	if (req->flags & ~PHYR_SUBMIT_STALE)
		return -EINVAL;
	if (req->opcode >= ARRAY_SIZE(phyr_op_lists))
		return -EINVAL;
	if (req->timeout_ms > PHYR_MAX_TIMEOUT_MS)
		return -EINVAL;
	lists = phyr_op_lists[req->opcode];
	if (!!(lists & 1) != !!req->src_map || !!(lists & 2) != !!req->dst_map)
		return -EINVAL;
	if (req->opcode != PHYR_OP_FILL && req->pattern)
		return -EINVAL;
	return 0;
}

/*
 * Take a reference to map @id of @pf for a command on @ep: -ENOENT if
 * there is none, -EXDEV if it was made for another endpoint, -ESTALE if it
 * was unmapped and @stale_ok is not set.
 */
static int phyr_submit_get_map(struct phyr_file *pf, u32 id,
			       struct phyr_ep *ep, bool stale_ok,
			       struct phyr_mapping **out)
{
	struct phyr_mapping *map;
	int ret = 0;

	*out = NULL;
	if (!id)
		return 0;
	mutex_lock(&pf->lock);
	map = xa_load(&pf->maps, id);
	if (!map)
		ret = -ENOENT;
	else if (map->ep != ep)
		ret = -EXDEV;
	else if (!map->mapped && !stale_ok)
		ret = -ESTALE;
	if (!ret) {
		kref_get(&map->ref);
		map->active++;
		*out = map;
	}
	mutex_unlock(&pf->lock);
	return ret;
}

static void phyr_submit_put_map(struct phyr_file *pf, struct phyr_mapping *map)
{
	if (!map)
		return;
	mutex_lock(&pf->lock);
	map->active--;
	mutex_unlock(&pf->lock);
	phyr_map_put(map);
}

static int phyr_submit_run(struct phyr_ep *ep, struct phyr_submit *req,
			   struct phyr_mapping *src, struct phyr_mapping *dst)
{
	struct device *dev = &ep->pdev->dev;
	u32 k = req->block_entries;
	u32 n_src = src ? phyr_list_entries(src->nr_ranges, k) : 0;
	u32 n_dst = dst ? phyr_list_entries(dst->nr_ranges, k) : 0;
	size_t bytes = (size_t)(n_src + n_dst) * sizeof(struct phyr_hw_range);
	struct phyr_hw_range *list = NULL;
	struct phyr_hw_cmd cmd = {};
	dma_addr_t list_dma = 0;
	struct phyr_cmd c;
	int ret;

	if (bytes) {
		list = dma_alloc_coherent(dev, bytes, &list_dma, GFP_KERNEL);
		if (!list)
			return -ENOMEM;
	}
	cmd.opcode = req->opcode;
	if (src) {
		phyr_write_list(list, list_dma, src, k, &cmd.src);
		req->src_head = le64_to_cpu(cmd.src.addr);
	}
	if (dst) {
		phyr_write_list(list + n_src,
				list_dma + n_src * sizeof(*list), dst, k,
				&cmd.dst);
		req->dst_head = le64_to_cpu(cmd.dst.addr);
	}
	cmd.pattern = cpu_to_le64(req->pattern);
	req->list_dma = list_dma;
	req->list_bytes = bytes;

	ret = phyr_queue_submit(&ep->queues[req->queue], &cmd, &c,
				req->timeout_ms ?: PHYR_DEFAULT_TIMEOUT_MS,
				&req->out_flags);
	if (!ret)
		req->cqe = c.cqe;
	/* the device is done with the lists (or stopped) */
	if (list)
		dma_free_coherent(dev, bytes, list, list_dma);
	return ret;
}

long phyr_ioctl_submit(struct phyr_file *pf, void __user *arg)
{
	struct phyr_mapping *src = NULL, *dst = NULL;
	struct phyr_submit req;
	struct phyr_ep *ep;
	bool stale_ok;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	ret = phyr_submit_check(&req);
	if (ret)
		return ret;
	req.src_head = 0;
	req.dst_head = 0;
	req.list_dma = 0;
	req.list_bytes = 0;
	req.out_flags = 0;
	memset(&req.cqe, 0, sizeof(req.cqe));

	ep = phyr_ep_get(req.ep);
	if (!ep)
		return -ENODEV;
	ret = phyr_ep_enter(ep);
	if (ret)
		goto out_put;
	if (req.queue >= ep->nr_queues) {
		ret = -EINVAL;
		goto out_leave;
	}
	stale_ok = req.flags & PHYR_SUBMIT_STALE;
	ret = phyr_submit_get_map(pf, req.src_map, ep, stale_ok, &src);
	if (ret)
		goto out_leave;
	ret = phyr_submit_get_map(pf, req.dst_map, ep, stale_ok, &dst);
	if (ret)
		goto out_maps;

	ret = phyr_submit_run(ep, &req, src, dst);
	if (!ret && copy_to_user(arg, &req, sizeof(req)))
		ret = -EFAULT;
out_maps:
	phyr_submit_put_map(pf, dst);
	phyr_submit_put_map(pf, src);
out_leave:
	phyr_ep_leave(ep);
out_put:
	phyr_ep_put(ep);
	return ret;
}
