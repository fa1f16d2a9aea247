// SPDX-License-Identifier: GPL-2.0
/*
 * phyr_hello: the smallest module phyr-harness builds for the guest kernel and loads at boot,
 * so `phyr-harness test` checks module building (headers, compiler, kbuild tools) and loading
 * (vermagic, dependency order) on every kernel it boots. It depends on vfio, so it is also
 * loaded after a module it needs, in the order .modinfo says.
 */
#include <linux/module.h>
#include <linux/utsname.h>
#include <linux/vfio.h>

static int __init phyr_hello_init(void)
{
	/* A symbol from vfio.ko makes modpost record `depends=vfio`. */
	pr_info("phyr_hello: loaded on %s (vfio at %ps)\n", init_utsname()->release,
		vfio_register_group_dev);
	return 0;
}

static void __exit phyr_hello_exit(void)
{
	pr_info("phyr_hello: unloaded\n");
}

module_init(phyr_hello_init);
module_exit(phyr_hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("phyr harness test module: built for the booted kernel and loaded by init");
